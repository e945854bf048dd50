#!/usr/bin/env python3
"""Writes test/fixtures/data/opencv-resize.json: the SHA-256 of cv2.resize(INTER_LINEAR) of the
fixture image (RGB, as the 2018 seed resized it) at several sizes, so test/seed.test.mjs checks
DATASET.resize 'opencv' against OpenCV without needing it. Run with python3-opencv installed:
  /usr/bin/python3 scripts/opencv-resize-fixture.py
"""
import hashlib, json
import cv2

SOURCE = 'test/fixtures/data/ADE_val_00001519.jpg'
SIZES = [(450, 337), (600, 450), (304, 232), (1000, 752), (37, 29), (683, 512)]

bgr = cv2.imread(SOURCE, cv2.IMREAD_COLOR)
rgb = bgr[:, :, ::-1].copy()
cases = []
for w, h in SIZES:
    out = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    cases.append({'width': w, 'height': h, 'sha256': hashlib.sha256(out.tobytes()).hexdigest(),
                  'first': out.reshape(-1)[:12].tolist()})
with open('test/fixtures/data/opencv-resize.json', 'w') as f:
    json.dump({'source': SOURCE, 'opencv': cv2.__version__, 'decoded_sha256': hashlib.sha256(rgb.tobytes()).hexdigest(),
               'width': rgb.shape[1], 'height': rgb.shape[0], 'cases': cases}, f, indent=1)
    f.write('\n')
