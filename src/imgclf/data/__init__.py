"""Data: sources (download), split into class folders, tf.data input."""
