"""fruixops: build Fruix system closures, push them over SSH with a signed
manifest that the host verifies itself, switch boot generations, roll back."""

__version__ = "0.1.0"
