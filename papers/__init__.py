"""Paper folders. Each `papers/<paper>/` is a package holding its models, specs and published tables."""
