"""telehub vehicle agent: reads CAN buses or logs, decodes with DBC files and streams to the cloud."""

__version__ = "0.1.0"
