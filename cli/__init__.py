"""The application shell: the ``brigade`` command, the embedded stack, its supervisor, demo and top.

It sits above every other package and may import any of them; nothing imports it.
"""
