"""Replace files of one virtual environment by hard links to identical files of another.

    python tools/dedupe_venv.py TARGET_VENV SOURCE_VENV

Only files with the same path below site-packages, the same size and the same
bytes are linked, so the target environment behaves exactly as before.
"""

import filecmp
import os
import sys
from pathlib import Path


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {venv}")
    return found[0]


def main(target: str, source: str) -> None:
    t, s = site_packages(Path(target)), site_packages(Path(source))
    linked = saved = 0
    for dirpath, _, files in os.walk(t):
        for name in files:
            tf = Path(dirpath) / name
            sf = s / tf.relative_to(t)
            try:
                st_t, st_s = tf.lstat(), sf.lstat()
            except FileNotFoundError:
                continue
            if st_t.st_ino == st_s.st_ino or st_t.st_size != st_s.st_size or st_t.st_size < 4096:
                continue
            if tf.is_symlink() or sf.is_symlink() or not filecmp.cmp(tf, sf, shallow=False):
                continue
            tmp = tf.with_name(tf.name + ".dedupe-tmp")
            os.link(sf, tmp)
            os.replace(tmp, tf)
            linked += 1
            saved += st_t.st_size
    print(f"dedupe: {linked} files now shared with {source} ({saved / 2**30:.2f} GiB saved)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
