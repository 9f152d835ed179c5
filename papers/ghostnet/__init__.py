TITLE = "GhostNet: More Features from Cheap Operations"
ARXIV = "1911.11907"
