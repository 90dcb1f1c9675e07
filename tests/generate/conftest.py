import sys
from pathlib import Path

# worker processes unpickle env factories from this directory's helper module
sys.path.insert(0, str(Path(__file__).parent))
