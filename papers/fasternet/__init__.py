TITLE = "Run, Don't Walk: Chasing Higher FLOPS for Faster Neural Networks"
ARXIV = "2303.03667"
