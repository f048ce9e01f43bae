"""The four phases: init, experiment, evaluate, deploy. Each takes a config and returns a result dict."""
