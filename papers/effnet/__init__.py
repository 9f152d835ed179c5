TITLE = "EffNet: An Efficient Structure for Convolutional Neural Networks"
ARXIV = "1801.06434"
