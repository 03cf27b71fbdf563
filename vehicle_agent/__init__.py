"""telehub vehicle agent: reads CAN buses or logs, decodes them with DBC files and streams them."""

__version__ = "0.1.0"
