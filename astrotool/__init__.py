"""astrotool: one ``astro`` command for five astronomy research pipelines.

The core package holds nothing domain-specific: the command line, the plugin
system, layered configuration, console output, the workspace convention,
executors and array backends. Science lives in the plugins
(``astrotool_dre``, ``astrotool_lens``, ``astrotool_plato``, ``astrotool_ztf``).
"""

__docformat__ = "numpy"
__version__ = "0.1.0"
