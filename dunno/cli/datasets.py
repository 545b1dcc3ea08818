"""``dunno datasets``: list the datasets and whether their files are present and verified;
``--download NAME`` fetches MNIST / Fashion-MNIST / CIFAR-10 / CIFAR-100 / SVHN."""

from __future__ import annotations

import argparse

from dunno.cli.common import add_data_dir

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("datasets", help="list datasets and whether their files are verified",
                              description=__doc__)
    add_data_dir(p)
    p.add_argument("--download", metavar="NAME[,NAME]", default=None,
                   help="fetch mnist, fashion-mnist, cifar10, cifar100 and/or svhn into the "
                   "data directory (sha256-verified)")
    p.add_argument("--mirror", default=None, metavar="URL[,URL]",
                   help="base URLs to download from (None: the built-in mirror list)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from dunno.data import available_datasets, dataset_status
    from dunno.data.colour import COLOUR_SETS, download_colour_set
    from dunno.data.images import IDX_SETS, download_idx_set
    from dunno.reporting import format_table, write_json

    if args.download:
        mirrors = args.mirror.split(",") if args.mirror else None
        for name in args.download.split(","):
            base = name.removesuffix("-binary")
            if base in IDX_SETS:
                folder = download_idx_set(base, args.data_dir, mirrors)
            elif name in COLOUR_SETS:
                base, folder = name, download_colour_set(name, args.data_dir, mirrors)
            else:
                raise ValueError(
                    f"--download supports {sorted(IDX_SETS) + sorted(COLOUR_SETS)}. Got {name!r}."
                )
            print(f"{base}: files in {folder}")
    descriptions = {d["name"]: d["description"] for d in available_datasets()}
    rows = [
        {"name": r["name"], "status": r["status"], "detail": r["detail"],
         "description": descriptions[r["name"]]}
        for r in dataset_status(args.data_dir)
    ]
    print(format_table(rows, ["name", "status", "detail"]))
    if args.json:
        write_json(rows, args.json)
    return 0
