"""python -m pipelines.serving --model flights_delay --port 8000 [--workers 2] [--models a,b]"""

import argparse
import logging
import os

import uvicorn

from pipelines.serving.settings import ServingSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None,
                        help="the default model, answering /invocations and /predict ($MLOPS_SERVING_MODEL)")
    parser.add_argument("--models", default=None,
                        help="more registered models to serve, comma-separated ($MLOPS_SERVING_MODELS); the "
                             "model of every config in include/models is served too")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=ServingSettings().workers,
                        help="worker processes, each with its own model copies and micro-batcher")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The workers build their apps from the environment (ServingSettings), so the options travel there.
    if args.model:
        os.environ["MLOPS_SERVING_MODEL"] = args.model
    if args.models is not None:
        os.environ["MLOPS_SERVING_MODELS"] = args.models
    os.environ["MLOPS_SERVING_ALIAS"] = args.alias
    os.environ["MLOPS_SERVING_WORKERS"] = str(args.workers)  # the deploy task waits for every worker
    uvicorn.run("pipelines.serving.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
