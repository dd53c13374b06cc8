"""Change map of an image pair with a trained AWMambaBCD / AWMambaSCD (`downstream.change_detection.inference`).

    python tools/detect_changes.py A.png B.png --out change.png --checkpoint work_dirs/.../iter_40000.pth
    python tools/detect_changes.py A.png B.png --out change.png --task scd --checkpoint ...   # + semantic maps"""
from vimamba.downstream.change_detection.inference import main

if __name__ == '__main__':
    main()
