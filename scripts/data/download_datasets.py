"""Download the datasets XMem trains and evaluates on, from the Google Drive mirrors the original XMem used.

    python scripts/data/download_datasets.py --static --davis --youtube --root ..

Layout made under --root (the reference's, `../` of the repository by default):
    static/{fss,DUTS-TR,DUTS-TE,ecssd,BIG_small,HRSOD_small}     --static     (stage 0)
    DAVIS/2016, DAVIS/2017/{trainval,test-dev}                     --davis      (stages 2-3, evaluation)
    YouTube/{train,train_480p,valid}, YouTube/all_frames/valid_all_frames  --youtube
    YouTube2018/{valid,all_frames}                                 --youtube2018 (evaluation)
    long_video_set/                                                --long-video (evaluation)
BL30K (stage 1, about 700 GB) is not mirrored any more; --bl30k prints where to get it.
After --youtube, train/ is resized into train_480p/ by scripts/data/resize_youtube.py.

These are re-distributions or simple derivatives of the original datasets; read and respect their licences.
Sources: DUTS http://saliencydetection.net/duts, HRSOD https://github.com/yi94code/HRSOD, FSS-1000
https://github.com/HKUSTCV/FSS-1000, ECSSD https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html,
BIG https://github.com/hkchengrex/CascadePSP, YouTube-VOS https://youtube-vos.org, DAVIS https://davischallenge.org.

Archives already extracted are skipped; a download goes to a temporary file that is deleted if anything fails.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm
from configs.common import project_command, run_child, run_cli

GOOGLE_DRIVE_URL = "https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"
"""Direct-download endpoint; `confirm=t` skips the 'file too large to scan' page of big archives."""
TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20
ZIP_MAGIC = b"PK"
BL30K_URL = "https://doi.org/10.13012/B2IDB-1702934_V1"
XMEM_DATA_GUIDE = "https://github.com/hkchengrex/XMem/blob/main/docs/GETTING_STARTED.md"
YOUTUBE_RESIZE = ("YouTube/train", "YouTube/train_480p")
RESIZE_SCRIPT = "scripts/data/resize_youtube.py"
LICENCE_NOTE = ("These archives are re-distributions or simple derivatives of the original datasets; read and "
                "respect their licences and cite the original papers.")


@dataclass(frozen=True)
class Archive:
    """One zip on Google Drive.

    Attributes:
        label: what it holds, for progress and messages.
        file_id: Google Drive file id (from the original XMem's download script).
        destination: folder under --root to extract into.
        done_marker: path under --root whose existence means "already extracted".
        manual: where to get it by hand.
        renames: (extracted name, final name) pairs inside `destination` (the zips unpack to a generic `DAVIS`).
    """

    label: str
    file_id: str
    destination: str
    done_marker: str
    manual: str
    renames: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return GOOGLE_DRIVE_URL.format(file_id=self.file_id)


DATASETS: dict[str, tuple[Archive, ...]] = {
    "static": (
        Archive("static images (FSS-1000, DUTS, ECSSD, BIG, HRSOD)", "1wUJq3HcLdN-z1t4CsUhjeZ9BVDb9YKLd", "static",
                "static/DUTS-TR", "each dataset's own page (see this script's docstring)"),
    ),
    "davis": (
        Archive("DAVIS 2016", "198aRlh5CpAoFz0hfRgYbiNenn_K8DxWD", "DAVIS", "DAVIS/2016",
                "https://davischallenge.org/davis2016/code.html", (("DAVIS", "2016"),)),
        Archive("DAVIS 2017 trainval 480p", "1kiaxrX_4GuW6NmiVuKGSGVoKGWjOdp6d", "DAVIS/2017", "DAVIS/2017/trainval",
                "https://davischallenge.org/davis2017/code.html", (("DAVIS", "trainval"),)),
        Archive("DAVIS 2017 test-dev 480p", "1fmkxU2v9cQwyb62Tj1xFDdh2p4kDsUzD", "DAVIS/2017", "DAVIS/2017/test-dev",
                "https://davischallenge.org/davis2017/code.html", (("DAVIS", "test-dev"),)),
    ),
    "youtube": (
        Archive("YouTube-VOS 2019 train", "13Eqw0gVK-AO5B-cqvJ203mZ2vzWck9s4", "YouTube", "YouTube/train",
                "https://youtube-vos.org/dataset/"),
        Archive("YouTube-VOS 2019 valid", "1o586Wjya-f2ohxYf9C1RlRH-gkrzGS8t", "YouTube", "YouTube/valid",
                "https://youtube-vos.org/dataset/"),
        Archive("YouTube-VOS 2019 valid, all frames", "1rWQzZcMskgpEQOZdJPJ7eTmLCBEIIpEN", "YouTube/all_frames",
                "YouTube/all_frames/valid_all_frames", "https://youtube-vos.org/dataset/"),
    ),
    "youtube2018": (
        Archive("YouTube-VOS 2018 valid", "1-QrceIl5sUNTKz7Iq0UsWC6NLZq7girr", "YouTube2018", "YouTube2018/valid",
                "https://youtube-vos.org/dataset/"),
        Archive("YouTube-VOS 2018 valid, all frames", "1yVoHM6zgdcL348cFpolFcEl4IC1gorbV", "YouTube2018/all_frames",
                "YouTube2018/all_frames/valid_all_frames", "https://youtube-vos.org/dataset/"),
    ),
    "long_video": (
        Archive("Long-time Video (LV1, LV3)", "100MxAuV0_UL20ca5c-5CNpqQ5QYPDSoz", "long_video_set",
                "long_video_set/long_video", XMEM_DATA_GUIDE),
    ),
}


def download(archive: Archive, temporary: Path) -> None:
    """Stream `archive` into `temporary` with a progress bar.

    Raises:
        ConnectionError: the network is unreachable, the server refused, or it sent something that is not a zip;
            one line naming the URL and the manual alternative.
    """
    by_hand = (f"download it by hand from {archive.manual} (or {XMEM_DATA_GUIDE}) and extract it into "
               f"{archive.destination}/")
    try:
        with urllib.request.urlopen(archive.url, timeout=TIMEOUT_S) as response, open(temporary, "wb") as sink:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=archive.label) as progress:
                while chunk := response.read(CHUNK_BYTES):
                    sink.write(chunk)
                    progress.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(f"cannot download {archive.label} from {archive.url} ({reason}); {by_hand}") from None
    with open(temporary, "rb") as handle:
        if handle.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise ConnectionError(f"{archive.url} did not return a zip archive (Google Drive quota or sign-in "
                                  f"page?); {by_hand}")


def fetch(archive: Archive, root: Path) -> None:
    """Download and extract one archive under `root`, unless its marker already exists."""
    if (root / archive.done_marker).exists():
        print(f"{archive.label}: already in {root / archive.done_marker}, skipped")
        return
    destination = root / archive.destination
    destination.mkdir(parents=True, exist_ok=True)
    staging = destination / f".extracting-{archive.file_id}"
    shutil.rmtree(staging, ignore_errors=True)
    temporary = destination / f".{archive.file_id}.zip.partial"
    try:
        download(archive, temporary)
        with zipfile.ZipFile(temporary) as bundle:
            bundle.extractall(staging)
    finally:
        temporary.unlink(missing_ok=True)
    # Move into place only once everything is extracted, so a crash never looks like a finished dataset.
    renames = dict(archive.renames)
    for entry in sorted(staging.iterdir()):
        target = destination / renames.get(entry.name, entry.name)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        entry.rename(target)
    staging.rmdir()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--root", type=Path, default=Path(".."), help="where the dataset folders go (default ..)")
    for name in DATASETS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true",
                            help=", ".join(a.label for a in DATASETS[name]))
    parser.add_argument("--bl30k", action="store_true", help="print where to download BL30K (not automatic)")
    parser.add_argument("--all", action="store_true", help="every dataset above")
    parser.add_argument("--yes", action="store_true", help="do not ask to confirm the licence note")
    args = parser.parse_args(argv)
    chosen = [name for name in DATASETS if args.all or getattr(args, name)]
    if args.bl30k or args.all:
        print(f"BL30K is not mirrored any more: download it from {BL30K_URL} and extract it so that "
              f"{args.root / 'BL30K'}/JPEGImages/<video>/ and Annotations/<video>/ exist.")
    if not chosen:
        if not (args.bl30k or args.all):
            parser.error("choose at least one of " + ", ".join(f"--{n.replace('_', '-')}" for n in DATASETS)
                         + ", --bl30k or --all")
        return
    print(LICENCE_NOTE)
    if not args.yes and input("[y] to continue: ").strip().lower() != "y":
        sys.exit("cancelled")
    try:
        for name in chosen:
            for archive in DATASETS[name]:
                fetch(archive, args.root)
    except ConnectionError as error:
        sys.exit(f"error: {error}")
    if "youtube" in chosen:  # resumable: finished frames are skipped
        run_child(project_command(RESIZE_SCRIPT, str(args.root / YOUTUBE_RESIZE[0]),
                                  str(args.root / YOUTUBE_RESIZE[1])), check=True)
    print("done")


if __name__ == "__main__":
    sys.exit(run_cli(main))
