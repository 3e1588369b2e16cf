"""obsrv service tasks: the code every compiled task runs, written against a small table I/O port."""
