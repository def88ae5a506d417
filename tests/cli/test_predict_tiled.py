"""`fcn-keras predict --tile` on the reduced demo's SavedModel: it knows its receptive field from its export.json,
and its tiled masks are the Keras model's untiled ones."""

from __future__ import annotations

import numpy as np
from PIL import Image


def test_a_saved_model_tiles_like_the_keras_file_segments_whole(demo_run, tmp_path, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    sample = np.asarray(Image.open(next((demo_out / "data" / "JPEGImages").glob("*.jpg"))))
    big = np.tile(sample, (3, 9, 1))  # 96 x 432: three windows of 320 across, at the exact overlap
    Image.fromarray(big).save(tmp_path / "big.png")
    status, out, err = fcn_keras_cmd("predict", demo_out / "saved_model", tmp_path / "big.png", "--out",
                                     tmp_path / "tiled", "--tile", "320,320")
    assert status == 0, err
    assert "tiles 320x320 overlapping 256 (exact from 256)" in out
    status, _, err = fcn_keras_cmd("predict", demo_out / "model.keras", tmp_path / "big.png", "--out",
                                   tmp_path / "whole")
    assert status == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "tiled" / "big_mask.png")),
                                  np.asarray(Image.open(tmp_path / "whole" / "big_mask.png")))
    # The reduced demo's model is barely trained (its masks may be one class): its logits are compared too.
    from fcn_keras.cli.models import load_segmenter
    from fcn_keras.tiling import tiled

    whole = load_segmenter(str(demo_out / "model.keras")).logits(big)
    assert whole.std(axis=(0, 1)).min() > 0
    np.testing.assert_allclose(tiled(load_segmenter(str(demo_out / "saved_model")), (320, 320)).logits(big), whole,
                               rtol=0, atol=1e-4 * np.abs(whole).max())
