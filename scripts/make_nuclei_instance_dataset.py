"""Export nuclei2d as a 2-class TIFF dataset whose connected components are the instances: pixels
where two different nuclei touch (4-neighbourhood) become background, a one-pixel gap, so the prompt
trainer (objects = connected components) sees each nucleus as its own object. Used for
nuclei-2d-prompt (issue 18)."""

import sys

import numpy as np
import tifffile

from napari_attnseg.data.export import export_case

src, out = sys.argv[1], sys.argv[2]
image = tifffile.imread(f"{src}/image.tif")
inst = tifffile.imread(f"{src}/labels.tif").astype(np.int64)
gap = np.zeros(inst.shape, bool)
for axis in (0, 1):
    for shift in (1, -1):
        other = np.roll(inst, shift, axis=axis)
        gap |= (inst > 0) & (other > 0) & (other != inst)
sem = ((inst > 0) & ~gap).astype(np.uint8)
export_case(image, sem, out, "tiff", label_names=["background", "nucleus"], case_id="nuclei2d", overwrite=True)
print(f"{out}: {gap.sum()} gap pixels")
