"""hwmodel: a differentiable hardware cost model in pure JAX (never imports flax).

Public API (re-exported explicitly):

* Workloads: :class:`LayerSpec`, :class:`Workload`, :class:`Unrecognized`,
  ``CATEGORIES``; extraction from any JAX function: :func:`extract_workload`,
  :class:`ExtractionError`.
* Architectures: :class:`Architecture`, :class:`MemoryLevel`, :class:`AreaModel`,
  ``OPERANDS``; memory-level kinds ``LEVEL_KINDS`` and their properties
  ``LEVEL_KIND_PROPERTIES`` / :func:`level_kind` (:class:`LevelKind`); loading and checking: :func:`load_arch`, :func:`list_presets`,
  :func:`preset_path`, :func:`validate_architecture`, :func:`arch_to_yaml`,
  :func:`save_arch`, :func:`load_ert`; metrics (pure JAX, differentiable):
  :func:`area_mm2`, :func:`area_breakdown_mm2`, :func:`onchip_bytes`,
  :func:`level_storage_bits`, :func:`level_instances`; helpers: :func:`replace_level`,
  :func:`stack_archs`, :func:`describe`; size-dependent access energy for resized
  designs: :func:`scale_access_energy`, :func:`access_energy_factors`,
  ``DEFAULT_ENERGY_EXPONENT``; narrower or wider words: :func:`scale_word_bits`.
* Cost model: ``DATAFLOWS``, ``DATAFLOW_SPECS``, ``OBJECTIVES``; loop nests
  :class:`Mapping` (stacked: :class:`MappingStack`, :func:`stack_mappings`),
  :func:`validate_mapping`; the mapper :func:`map_layer`, :func:`map_workload`,
  :func:`candidate_mappings`, :class:`NoLegalMapping`; the differentiable model
  :func:`cost` -> :class:`Cost` (per layer :class:`LayerCost`), :class:`Knobs`,
  :func:`mapping_candidates` / :class:`CandidateSet` (traceable mapper path); the
  brute-force reference :func:`simulate`.
* Files: :func:`atomic_write_text`, :func:`atomic_write_bytes` (temporary file +
  rename; every file hwmodel and codesign write goes through them).
* ZigZag interchange (peer check): :func:`export_zigzag`, :func:`zigzag_workload`,
  :func:`zigzag_accelerator`, :func:`zigzag_mapping`, :func:`architecture_from_zigzag`,
  :class:`ZigZagFiles`, ``ZIGZAG_DIMS``, ``ZIGZAG_DATAFLOWS``, :class:`ZigZagDataflow`.
"""

from hwmodel._util import atomic_write_bytes, atomic_write_text
from hwmodel.arch.architecture import (
    Architecture,
    ArchitectureError,
    AreaModel,
    MemoryLevel,
    Problem,
    architecture_problems,
    area_breakdown_mm2,
    area_mm2,
    describe,
    level_instances,
    level_storage_bits,
    onchip_bytes,
    replace_level,
    stack_archs,
    validate_architecture,
)
from hwmodel.arch.ert import ERT, load_ert
from hwmodel.arch.kinds import (
    COMPRESSION_MODES,
    LEVEL_KIND_PROPERTIES,
    LEVEL_KINDS,
    OPERANDS,
    SPARSITY_MODES,
    LevelKind,
    level_kind,
)
from hwmodel.arch.load import list_presets, load_arch, preset_path
from hwmodel.arch.scaling import (
    DEFAULT_ENERGY_EXPONENT,
    access_energy_factors,
    scale_access_energy,
    scale_word_bits,
)
from hwmodel.arch.yaml_read import parse_arch_yaml
from hwmodel.arch.yaml_write import arch_to_yaml, save_arch
from hwmodel.costmodel.cost import (
    BACKENDS,
    KNOB_DOMAIN,
    CandidateSet,
    Cost,
    Knobs,
    LayerCost,
    check_knobs,
    cost,
    mapping_candidates,
)
from hwmodel.costmodel.mapper import (
    MAX_EXACT_MACS,
    OBJECTIVES,
    NoLegalMapping,
    candidate_mappings,
    map_layer,
    map_workload,
)
from hwmodel.costmodel.simulate import simulate
from hwmodel.interop.zigzag import (
    ZIGZAG_DATAFLOWS,
    ZIGZAG_DIMS,
    ZigZagDataflow,
    ZigZagFiles,
    architecture_from_zigzag,
    export_zigzag,
    zigzag_accelerator,
    zigzag_mapping,
    zigzag_workload,
)
from hwmodel.mapping.dataflows import DATAFLOW_SPECS, DATAFLOWS, DataflowSpec
from hwmodel.mapping.loopnest import Mapping, MappingStack, stack_mappings
from hwmodel.mapping.tiles import validate_mapping
from hwmodel.workload.extract import ExtractionError, extract_workload
from hwmodel.workload.spec import CATEGORIES, DIMS, LayerSpec, Unrecognized, Workload

__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "COMPRESSION_MODES",
    "DATAFLOWS",
    "DATAFLOW_SPECS",
    "DEFAULT_ENERGY_EXPONENT",
    "DIMS",
    "ERT",
    "KNOB_DOMAIN",
    "LEVEL_KINDS",
    "MAX_EXACT_MACS",
    "LEVEL_KIND_PROPERTIES",
    "LevelKind",
    "level_kind",
    "OBJECTIVES",
    "OPERANDS",
    "SPARSITY_MODES",
    "Architecture",
    "ArchitectureError",
    "AreaModel",
    "CandidateSet",
    "Cost",
    "DataflowSpec",
    "ExtractionError",
    "Knobs",
    "LayerCost",
    "LayerSpec",
    "Mapping",
    "MappingStack",
    "MemoryLevel",
    "NoLegalMapping",
    "Problem",
    "Unrecognized",
    "Workload",
    "arch_to_yaml",
    "atomic_write_bytes",
    "atomic_write_text",
    "access_energy_factors",
    "architecture_problems",
    "area_breakdown_mm2",
    "area_mm2",
    "candidate_mappings",
    "check_knobs",
    "cost",
    "describe",
    "extract_workload",
    "level_instances",
    "level_storage_bits",
    "list_presets",
    "load_arch",
    "load_ert",
    "map_layer",
    "map_workload",
    "mapping_candidates",
    "onchip_bytes",
    "parse_arch_yaml",
    "preset_path",
    "replace_level",
    "save_arch",
    "scale_access_energy",
    "scale_word_bits",
    "simulate",
    "stack_archs",
    "stack_mappings",
    "validate_architecture",
    "validate_mapping",
    # ZigZag interchange (branch zigzag)
    "ZIGZAG_DATAFLOWS",
    "ZIGZAG_DIMS",
    "ZigZagDataflow",
    "ZigZagFiles",
    "architecture_from_zigzag",
    "export_zigzag",
    "zigzag_accelerator",
    "zigzag_mapping",
    "zigzag_workload",
]
