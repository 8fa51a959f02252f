"""Make a folder that deploys as a Hugging Face Space: the app, its README header, a wheel of hf-divsft,
and a requirements.txt that installs that wheel from the Space repo itself.

    python spaces/divsft-explorer/bundle.py --space OWNER/NAME --out build/space
    hf upload OWNER/NAME build/space --repo-type space

hf-divsft is not on PyPI, and a Space runs `pip install -r requirements.txt` before it copies the repo, so
a relative path to the wheel cannot work; its URL in the (public) Space repo can, since the build starts
after the upload. Run it from a checkout; the wheel is built from it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]


def wheel_url(space: str, wheel: str) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/spaces/{space}/resolve/main/{wheel}"


def bundle(space: str, out: Path) -> Path:
    if out.exists():
        sys.exit(f"error: {out}: already exists; choose a new --out")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", tmp, str(CHECKOUT)], check=True)
        [wheel] = Path(tmp).glob("hf_divsft-*.whl")
        out.mkdir(parents=True)
        shutil.copy(wheel, out / wheel.name)
    for name in ("app.py", "README.md"):
        shutil.copy(HERE / name, out / name)
    (out / "requirements.txt").write_text(
        "# Written by bundle.py: hf-divsft's wheel, uploaded with this Space "
        "(gradio comes from sdk_version).\n"
        f"hf-divsft[space] @ {wheel_url(space, wheel.name)}\n"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", required=True, help="the Space repo id, OWNER/NAME")
    parser.add_argument("--out", type=Path, required=True, help="a new folder to upload as the Space")
    args = parser.parse_args()
    print(f"wrote {bundle(args.space, args.out)}; "
          f"upload it with: hf upload {args.space} {args.out} --repo-type space")


if __name__ == "__main__":
    main()
