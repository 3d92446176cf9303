"""Run by ComfyUI-Manager / comfy-cli after requirements.txt: add OpenCV only if the environment has none.

Every OpenCV wheel (opencv-python, -headless, -contrib, -contrib-headless) provides the same `cv2`
package; installing a second one beside an existing one overwrites its files and can break `cv2` for all
packs. So: keep whichever is there; install the headless build only when none is.
"""

import importlib.metadata
import subprocess
import sys

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless")


def has_opencv() -> bool:
    for name in OPENCV_DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import cv2  # noqa: F401  (an OpenCV built from source)
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    if has_opencv():
        print("[AnimeReward] OpenCV already installed; leaving it as it is")
    else:
        print("[AnimeReward] installing opencv-python-headless")
        subprocess.check_call([sys.executable, "-m", "pip", "install", "opencv-python-headless>=4.8"])
