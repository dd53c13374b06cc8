"""Restore images with a MaIR / MaIRUNet model: see `vimamba.downstream.restoration.inference`."""
from vimamba.downstream.restoration.inference import main

if __name__ == '__main__':
    main()
