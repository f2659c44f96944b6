import sys

from machined.daemon import main

if __name__ == "__main__":
    sys.exit(main())
