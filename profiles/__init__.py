"""The shipped scan profiles, installed as the package `otprobe.profiles` so they travel with every install.

Only the YAML files beside this one matter; otprobe/profile.py finds them with importlib.resources.
"""
