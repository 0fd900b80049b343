"""Evaluation: pixel anomaly metrics, streaming accumulation, closed/open-mIoU, component metrics, breakdowns,
threshold calibration and reports (docs/ARCHITECTURE.md section 5, docs/EVALUATION.md). numpy only at import."""
from densehybrid_ros.evaluation.metrics import (
    AnomalyMetrics, BinaryCurve, OperatingPoint, anomaly_metrics, auroc, average_precision, exact_curve,
    fpr_at_tpr, operating_point_at_tpr, pixel_metrics,
)
from densehybrid_ros.evaluation.streaming import ScoreBinning, ScoreHistogram

__all__ = [
    "AnomalyMetrics", "BinaryCurve", "OperatingPoint", "anomaly_metrics", "auroc", "average_precision",
    "exact_curve", "fpr_at_tpr", "operating_point_at_tpr", "pixel_metrics", "ScoreBinning", "ScoreHistogram",
]
