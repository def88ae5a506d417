"""bfloat16 inference: the model's mixed_bfloat16 copy (fcn_keras.models.precision) and the native-bfloat16
detection that guards it (fcn_keras.hardware), on cpuinfo files written here."""

from __future__ import annotations

import numpy as np
import pytest
import keras

import fcn_keras
from bench.bench_export import randomize_scores
from fcn_keras import hardware
from fcn_keras.models import SegmentationModel, with_precision
from fcn_keras.segmenter import keras_segmenter

# /proc/cpuinfo excerpts (one processor each) of the CPU kinds the detection tells apart.
CASCADE_LAKE = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.50GHz\nflags\t\t: fpu sse2 avx2 fma " \
               "avx512f avx512bw avx512_vnni\n\n"
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
NEOVERSE_V1 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd aes sha2 crc32 atomics bf16 i8mm sve\n\n"
NEOVERSE_N1 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp\n\n"
NO_GPU = pytest.mark.skipif(bool(hardware.gpus()), reason="a GPU makes bfloat16 native whatever the CPU")


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    """FCN-8s over tiny_vgg taking RGB 0-255, with random (not zero) score layers: masks of several classes."""
    keras.utils.set_random_seed(2)  # a seed whose random network gives ``image`` three classes
    return randomize_scores(fcn_keras.fcn8s(num_classes=4, backbone="tiny_vgg", include_preprocessing=True), seed=2)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    # Noise at the network's stride (32): a random network gives it a mask of several classes.
    coarse = np.random.default_rng(1).uniform(0, 255, (4, 5, 3))
    return np.kron(coarse, np.ones((32, 32, 1)))[:117, :150].astype(np.uint8)


def cpuinfo(tmp_path, text: str):
    path = tmp_path / "cpuinfo"
    path.write_text(text * 2)  # two processors, as the file lists each
    return path


def test_bfloat16_copy_keeps_the_weights_computes_in_bfloat16_and_gives_float32_logits(model, image):
    fast = with_precision(model, "bfloat16")
    assert fast is not model and type(fast) is type(model) and fast.class_names == model.class_names
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), fast.get_weights()))
    assert all(v.dtype == "float32" for v in fast.weights)
    convolutions = [layer for layer in fast.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and {layer.compute_dtype for layer in convolutions} == {"bfloat16"}
    # What the architecture pins to float32 stays so: the preprocessing and the final crop.
    assert fast.get_layer("preprocessing").compute_dtype == fast.get_layer("score").compute_dtype == "float32"
    x = image[None].astype(np.float32)
    reference, logits = model.predict_on_batch(x), fast.predict_on_batch(x)
    assert logits.dtype == np.float32 and logits.shape == reference.shape
    error = np.abs(logits - reference).max() / np.abs(reference).max()
    assert 0 < error < 0.05  # not float32 (it would be ~1e-7), and bfloat16's 8-bit mantissa, not garbage
    assert len(np.unique(reference.argmax(-1))) > 1
    assert np.mean(logits.argmax(-1) == reference.argmax(-1)) >= 0.98
    # Back to float32: the original model's outputs exactly; a float32 model is its own float32 copy.
    back = with_precision(fast, "float32")
    assert {layer.compute_dtype for layer in back.layers} == {"float32"}
    np.testing.assert_array_equal(back.predict_on_batch(x), reference)
    assert with_precision(model, "float32") is model and with_precision(fast, "bfloat16") is fast


def test_bad_precision_and_a_model_with_fixed_layer_policies_are_refused():
    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'bfloat16'\), got 'half'"):
        with_precision(fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg"), "half")
    x = keras.Input((None, None, 3))
    plain = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none")
    with pytest.raises(ValueError, match="could not make a bfloat16 copy of model .*dtype='mixed_bfloat16'"):
        with_precision(plain, "bfloat16")


@pytest.mark.parametrize("text, found", [(ZEN4, ["avx512_bf16"]), (SAPPHIRE_RAPIDS, ["avx512_bf16", "amx_bf16"]),
                                         (NEOVERSE_V1, ["bf16"]), (CASCADE_LAKE, []), (NEOVERSE_N1, [])])
def test_cpu_bfloat16_flags_are_read_from_cpuinfo(tmp_path, text, found):
    assert hardware.cpu_bfloat16_flags(cpuinfo(tmp_path, text)) == found
    if found:
        assert hardware.native_bfloat16(cpuinfo(tmp_path, text)) in (found[0], *hardware.gpus())


@NO_GPU
def test_bfloat16_is_refused_without_native_support_naming_the_argument(tmp_path, monkeypatch, model):
    monkeypatch.delenv(hardware.ALLOW_SLOW_ENV, raising=False)
    path = cpuinfo(tmp_path, CASCADE_LAKE)
    assert hardware.native_bfloat16(path) is None
    with pytest.raises(RuntimeError, match=r"precision='bfloat16' \(--precision bfloat16\) needs native bfloat16.*"
                                           r"lists no avx512_bf16 or amx_bf16 \(x86\) nor bf16 \(Arm\).*slower"):
        hardware.require_bfloat16(cpuinfo=path)
    with pytest.raises(RuntimeError, match="missing could not be read"):
        hardware.require_bfloat16(cpuinfo=tmp_path / "missing")
    # The escape hatches, and the segmenter reading the module's cpuinfo path.
    assert hardware.require_bfloat16(cpuinfo=path, allow_slow=True) == "emulated"
    monkeypatch.setattr(hardware, "CPUINFO", str(path))
    with pytest.raises(RuntimeError, match="--precision"):
        keras_segmenter(model, precision="bfloat16")
    assert keras_segmenter(model, precision="bfloat16", allow_slow=True).description.endswith(", bfloat16")
    monkeypatch.setenv(hardware.ALLOW_SLOW_ENV, "1")
    assert hardware.require_bfloat16() == "emulated"


def test_bfloat16_segmenter_agrees_with_float32(tmp_path, monkeypatch, model, image):
    monkeypatch.setattr(hardware, "CPUINFO", str(cpuinfo(tmp_path, ZEN4)))  # whatever CPU the tests run on
    fast = keras_segmenter(model, precision="bfloat16")
    reference = keras_segmenter(model)
    assert fast.class_names == reference.class_names and fast.receptive_field() == reference.receptive_field()
    assert fast.logits(image).dtype == np.float32
    assert np.mean(fast.segment(image) == reference.segment(image)) >= 0.98


def test_the_command_line_offers_the_precisions_the_models_take():
    from fcn_keras.cli.common import PRECISION_CHOICES
    from fcn_keras.models import PRECISIONS

    assert PRECISION_CHOICES == PRECISIONS
