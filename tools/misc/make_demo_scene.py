# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Draw the synthetic demo scene and its label map (demo/scene*.png).

No photo can be downloaded on the build machines, so the demo ships a drawn
scene: sky, sun, grass, a house with a roof and a door, and a tree. Every
region is one mask in ``scene_masks.png`` (0 = unlabelled).
"""
import argparse
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

REGIONS = ['sky', 'sun', 'grass', 'house', 'roof', 'door', 'tree']


def draw(width: int = 320, height: int = 240):
    img = Image.new('RGB', (width, height))
    lab = Image.new('L', (width, height))
    pi, pl = ImageDraw.Draw(img), ImageDraw.Draw(lab)
    horizon = int(height * 0.62)
    for y in range(horizon):  # sky gradient
        t = y / horizon
        pi.line([(0, y), (width, y)], fill=(int(90 + 80 * t), int(150 + 60 * t), 235))
    pl.rectangle([0, 0, width, horizon], fill=1)
    pi.ellipse([250, 20, 295, 65], fill=(255, 214, 40))
    pl.ellipse([250, 20, 295, 65], fill=2)
    rng = np.random.default_rng(0)
    pi.rectangle([0, horizon, width, height], fill=(70, 150, 60))
    for _ in range(400):  # grass texture
        x, y = rng.integers(0, width), rng.integers(horizon, height)
        pi.line([(x, y), (x + 1, y - 4)], fill=(40, 120 + int(rng.integers(0, 60)), 40))
    pl.rectangle([0, horizon, width, height], fill=3)
    house = [60, 100, 170, 190]
    pi.rectangle(house, fill=(205, 80, 60))
    pl.rectangle(house, fill=4)
    roof = [(50, 100), (115, 50), (180, 100)]
    pi.polygon(roof, fill=(110, 60, 40))
    pl.polygon(roof, fill=5)
    door = [102, 140, 128, 190]
    pi.rectangle(door, fill=(90, 50, 30))
    pl.rectangle(door, fill=6)
    pi.rectangle([210, 120, 222, 195], fill=(100, 70, 40))
    pi.ellipse([185, 70, 248, 140], fill=(30, 110, 40))
    pl.rectangle([210, 120, 222, 195], fill=7)
    pl.ellipse([185, 70, 248, 140], fill=7)
    return img, lab


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', default=osp.join(osp.dirname(__file__), '..', '..', 'demo'))
    args = parser.parse_args()
    img, lab = draw()
    img.save(osp.join(args.out_dir, 'scene.png'))
    lab.save(osp.join(args.out_dir, 'scene_masks.png'))
    print('regions (label value = index + 1):', ', '.join(REGIONS))


if __name__ == '__main__':
    main()
