"""The gRPC processor server: user plug-ins and built-in OpenCV processors behind vspd.v1.Processor."""
