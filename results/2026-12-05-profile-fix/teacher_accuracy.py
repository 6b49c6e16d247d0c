"""Teacher accuracy of distilled sets: the fraction of a set's images that the full-data ConvNet-3
teacher (models/fashion_mnist/checkpoints/teacher_convnet3.pt, 87.49 % on the test set) classifies as
their class. A cheap quality proxy beside the student cells.

    python teacher_accuracy.py EVAL_DIR TEACHER SET_DIR [SET_DIR ...]

EVAL_DIR is a copy of eval/ (its load_image_folder, accuracy and load_convnet are used as they are).
Prints one JSON line per set.
"""
import json
import sys

import torch

sys.path.insert(0, sys.argv[1])
from convnet import load_convnet  # noqa: E402
from validate import accuracy, load_image_folder  # noqa: E402

torch.set_num_threads(1)
teacher = load_convnet(sys.argv[2]).eval()
for folder in sys.argv[3:]:
    x, y, counts = load_image_folder(folder)
    with torch.no_grad():
        acc = accuracy(teacher, x, y)
    print(json.dumps({"set": folder, "images": int(len(y)), "teacher_accuracy": acc}), flush=True)
