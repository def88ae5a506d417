"""Datasets and tf.data input pipelines for FCN training and evaluation.

Every source yields examples ``(image uint8 [H, W, 3] RGB, label uint8 [H, W])``
at native size, where the label holds class indices and 255 marks void pixels.
Labels are decoded exactly (palette PNG indices, never luma); RGB colour labels
only through the colours of a folder dataset's metadata (fcn_keras.data.colors).

Sources:
    load_voc(root, split="train")         PASCAL VOC layout -> tf.data.Dataset
    voc_source(root, split)                the same as a FileSource (file list, decoded lazily)
    write_synthetic_voc(root, num_images=16, seed=0, image_size=(96, 128))
                                           writes a small VOC-layout dataset of shapes
    load_sbd(root, split="train") / sbd_source    SBD (cls/*.mat labels)
    seg11valid_source(voc_root), train_aug_source(voc_root, sbd_root, split_file)
    splits.make_seg11valid / make_train_aug / write_reference_splits / reference_split_path
    load_folder(split_file, metadata="camvid") / folder_source, load_metadata
                                           "image label" pair lists (CamVid layout)
    load_tfds(name, split, data_dir=...)   tfds datasets with masks (offline from a prepared data_dir;
                                           import from fcn_keras.data.tfds_source, needs the tfds extra)

Prepared format (sharded TFRecords, the fast path for training):
    prepare(source, out_dir, num_shards=None)  -> out_dir (idempotent, atomic, verified)
    load_prepared(out_dir, with_ids=False)     -> tf.data.Dataset like load_voc

Pipelines:
    make_pipeline(data, training=..., batch_size=1, crop_size=None, preprocessing="fcn",
                  scale_range=None, flip=True, jitter=False, seed=None, deterministic=False,
                  cache=False, input_context=None, pad_to_batch=False)
        -> (images float32 [B, H, W, 3], labels int32 [B, H, W], 255 = ignore) for model.fit

Detection (one place tells the layouts apart; the CLI and check_dataset use it):
    dataset_kind(path) -> "voc" | "sbd" | "folder" | "prepared"   (DataError naming the path otherwise)
    dataset_source(path, split=None, num_classes=None, metadata=None, check_files=True) -> FileSource
    dataset_splits(path) -> the split names of a VOC/SBD root

Errors and checks:
    DataError                              a ValueError whose message starts with the file
    check_dataset(path_or_source, split=None, num_classes=None, metadata=None)
        -> list[Problem]  every problem with its file (empty when clean); str(p) = "<file>: <problem>"

Modules, bottom to top (each imports only modules to its left, and
fcn_keras.files / palette / preprocessing; tests/test_layout.py checks it):
    colors -> decode -> source -> voc, sbd, folder -> splits (VOC + SBD reference lists) -> prepared
    -> detect (which layout a path is) -> check, pipeline;  synthetic and tfds_source stand alone

Example:
    >>> import tempfile
    >>> from fcn_keras import data
    >>> root = data.write_synthetic_voc(tempfile.mkdtemp(), num_images=4, seed=0)
    >>> train = data.make_pipeline(data.load_voc(root, "train"), training=True, seed=0)
    >>> images, labels = next(iter(train))
    >>> images.dtype.name, labels.dtype.name, images.shape[0]
    ('float32', 'int32', 1)
"""

from fcn_keras.data import splits
from fcn_keras.data.check import Problem, check_dataset, check_source
from fcn_keras.data.decode import DataError, decode_image, read_example, read_image, read_label
from fcn_keras.data.detect import dataset_kind, dataset_source, dataset_splits
from fcn_keras.data.folder import DatasetInfo, folder_source, load_folder, load_metadata
from fcn_keras.data.prepared import load_prepared, prepare, read_manifest
from fcn_keras.data.pipeline import MEAN_RGB, augment, make_pipeline, preprocess
from fcn_keras.data.sbd import load_sbd, sbd_source, train_aug_source
from fcn_keras.data.source import FileSource
from fcn_keras.data.splits import seg11valid_source
from fcn_keras.data.synthetic import write_synthetic_voc
from fcn_keras.data.voc import load_voc, voc_source

__all__ = [
    "DataError",
    "DatasetInfo",
    "FileSource",
    "MEAN_RGB",
    "Problem",
    "augment",
    "check_dataset",
    "check_source",
    "dataset_kind",
    "dataset_source",
    "dataset_splits",
    "decode_image",
    "folder_source",
    "load_folder",
    "load_metadata",
    "load_prepared",
    "load_sbd",
    "load_voc",
    "make_pipeline",
    "prepare",
    "preprocess",
    "read_manifest",
    "read_example",
    "read_image",
    "read_label",
    "sbd_source",
    "seg11valid_source",
    "splits",
    "train_aug_source",
    "voc_source",
    "write_synthetic_voc",
]
