raise ImportError("brokenplug needs a library that is not installed")
