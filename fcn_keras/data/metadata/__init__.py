"""Metadata TOML files of known folder datasets (class names, colours, ignore value); see fcn_keras.data.folder."""
