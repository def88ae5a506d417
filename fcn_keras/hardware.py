"""Whether this machine computes bfloat16 natively, and the refusal of bfloat16 inference where it does not.

Native means a GPU (Keras lists one), or a CPU whose ``/proc/cpuinfo`` names a
bfloat16 instruction set: ``avx512_bf16`` or ``amx_bf16`` on x86 (its
``flags`` lines), ``bf16`` on Arm (its ``Features`` lines). Elsewhere
bfloat16 is emulated by conversions around float32 arithmetic and is slower
than float32 itself: mixed_bfloat16 training measured 5x slower than float32
on a Cascade Lake Xeon (issue 13). There :func:`require_bfloat16` refuses,
unless ``allow_slow=True`` or the environment sets ``FCN_KERAS_ALLOW_SLOW_BFLOAT16=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

CPUINFO = "/proc/cpuinfo"
ALLOW_SLOW_ENV = "FCN_KERAS_ALLOW_SLOW_BFLOAT16"
CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""x86 ``flags`` and Arm ``Features`` entries that mean native bfloat16 arithmetic."""


def cpu_bfloat16_flags(cpuinfo: str | os.PathLike | None = None) -> list[str] | None:
    """The bfloat16 flags of :data:`CPU_BFLOAT16_FLAGS` that ``cpuinfo`` (default :data:`CPUINFO`) lists;
    None if it cannot be read.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cpuinfo"
        >>> _ = path.write_text("processor : 0\\nflags : fpu avx512f avx512_bf16 avx512_vnni\\n")
        >>> cpu_bfloat16_flags(path), cpu_bfloat16_flags(path.parent / "missing")
        (['avx512_bf16'], None)
    """
    try:
        text = Path(CPUINFO if cpuinfo is None else cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            found.update(value.split())
    return [flag for flag in CPU_BFLOAT16_FLAGS if flag in found]


def gpus() -> list[str]:
    """The GPUs Keras' backend sees (``["gpu:0", ...]``), empty where it sees none or cannot tell.

    Example:
        >>> isinstance(gpus(), list)
        True
    """
    import keras

    try:
        return list(keras.distribution.list_devices("gpu"))
    except Exception:  # a backend without a device list (numpy, torch): no GPU it would run on
        return []


def native_bfloat16(cpuinfo: str | os.PathLike | None = None) -> str | None:
    """What makes bfloat16 native here (``"gpu:0"``, ``"avx512_bf16"``, ...), or None where it is emulated.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cpuinfo"
        >>> _ = path.write_text("processor : 0\\nFeatures : fp asimd bf16 i8mm\\n")  # an Arm Neoverse V1
        >>> native_bfloat16(path) in ("bf16", *gpus())
        True
    """
    found = gpus() or cpu_bfloat16_flags(cpuinfo)
    return found[0] if found else None


def allow_slow_bfloat16() -> bool:
    """Whether the environment sets ``FCN_KERAS_ALLOW_SLOW_BFLOAT16`` to 1/true/yes (run emulated bfloat16 anyway).

    Example:
        >>> os.environ.pop(ALLOW_SLOW_ENV, None) and None
        >>> allow_slow_bfloat16()
        False
    """
    return os.environ.get(ALLOW_SLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def require_bfloat16(*, allow_slow: bool = False, cpuinfo: str | os.PathLike | None = None) -> str:
    """What makes bfloat16 native here (:func:`native_bfloat16`); where nothing does, a ``RuntimeError``.

    The error names the ``precision`` argument (``--precision`` on the
    command line) and says why. ``allow_slow=True``, or
    ``FCN_KERAS_ALLOW_SLOW_BFLOAT16=1``, returns ``"emulated"`` instead.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cpuinfo"
        >>> _ = path.write_text("processor : 0\\nflags : fpu avx2 avx512f avx512_vnni\\n")  # Cascade Lake
        >>> require_bfloat16(cpuinfo=path, allow_slow=True) if not gpus() else "emulated"
        'emulated'
    """
    native = native_bfloat16(cpuinfo)
    if native is not None:
        return native
    if allow_slow or allow_slow_bfloat16():
        return "emulated"
    flags = cpu_bfloat16_flags(cpuinfo)
    where = os.fspath(CPUINFO if cpuinfo is None else cpuinfo)
    seen = f"{where} could not be read" if flags is None else f"{where} lists no avx512_bf16 or amx_bf16 (x86) " \
        f"nor bf16 (Arm) flag"
    raise RuntimeError(
        f"precision='bfloat16' (--precision bfloat16) needs native bfloat16 arithmetic, and this machine has none: "
        f"{seen}, and Keras sees no GPU. Without it bfloat16 is emulated "
        f"and slower than float32 (mixed_bfloat16 training measured 5x slower than float32 on a Cascade Lake "
        f"Xeon), so use precision float32 (the default), or set {ALLOW_SLOW_ENV}=1 (allow_slow=True) to run "
        f"it anyway")
