TITLE = "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices"
ARXIV = "1707.01083"
