"""Caffe ``.caffemodel`` files without Caffe: a streaming reader, a writer, and FCN weight conversion.

- :mod:`fcn_keras.caffe.proto`: the ``caffe.proto`` field numbers, :class:`CaffeLayer`, :class:`CaffeModelError`;
- :mod:`fcn_keras.caffe.reader`: :func:`iter_caffemodel`, :func:`read_caffemodel` (streaming, validated);
- :mod:`fcn_keras.caffe.writer`: :func:`write_caffemodel` (both protobuf forms, atomic);
- :mod:`fcn_keras.caffe.mapping`: :func:`load_caffe_weights`, the exact mapping by layer name (convolutions,
  deconvolutions, fixed scales, batch normalizations);
- :mod:`fcn_keras.caffe.family`: the family's naming rules (DeepLab's ``fc8_voc12``, SegNet's folded ``BN``).

Example:
    >>> from fcn_keras import caffe
    >>> caffe.read_caffemodel is caffe.reader.read_caffemodel
    True
"""

from fcn_keras.caffe.mapping import load_caffe_weights
from fcn_keras.caffe.proto import CaffeLayer, CaffeModelError
from fcn_keras.caffe.reader import iter_caffemodel, read_caffemodel
from fcn_keras.caffe.writer import write_caffemodel

__all__ = ["CaffeLayer", "CaffeModelError", "iter_caffemodel", "read_caffemodel", "write_caffemodel", "load_caffe_weights"]
