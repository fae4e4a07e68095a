"""Model builders: perceptron, the chapter's simple CNN, keras.applications backbones, the top head."""
