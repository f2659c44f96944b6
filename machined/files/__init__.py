"""Files in instances (`/1.0/instances/<n>/files`): model.py is pure (headers, paths,
permissions), service.py does the I/O through runtime/rootfs.py."""
