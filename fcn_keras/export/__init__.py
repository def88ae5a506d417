"""Export FCNs for serving: TF Serving SavedModels, TFLite files, ONNX, with parity checks."""

from fcn_keras.export.saved_model import (
    DEFAULT_MAX_IMAGE_SIZE,
    MASK_PAD_VALUE,
    existing_versions,
    export_saved_model,
    read_export_info,
)

__all__ = ["DEFAULT_MAX_IMAGE_SIZE", "MASK_PAD_VALUE", "existing_versions", "export_saved_model", "read_export_info"]
