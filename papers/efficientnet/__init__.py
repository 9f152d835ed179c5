TITLE = "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"
ARXIV = "1905.11946"
