"""python -m pipelines.serving --model flights_delay --port 8000"""

import argparse
import logging

import uvicorn

from pipelines.serving.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="registered model name (default $MLOPS_SERVING_MODEL)")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(args.model, args.alias), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
