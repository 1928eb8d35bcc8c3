"""UDI and traceability: GS1 barcodes, the UDI of each device, recalled lots and lot traces."""
