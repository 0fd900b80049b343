"""Colouring and the RViz overlay: palette colours, anomaly highlight, drive corridor, alert boxes, status text.

Every function returns a new RGB uint8 image and leaves its inputs untouched (the node publishes the camera frame
and the maps it was given on other topics). Palettes go through a 256-entry lookup table (a user colour map),
blending through cv2.addWeighted: a 512x1024 overlay costs a few milliseconds on one core.
"""
from __future__ import annotations

from functools import lru_cache
import cv2
import numpy as np

from densehybrid_ros.core.alert import POLYGON_SHIFT as _SHIFT, AlertState, polygon_to_pixels

# RGB colours of the drawn elements. Alert boxes follow the traffic-light convention of the states.
STATE_COLOURS = {"clear": (0, 200, 0), "warning": (255, 176, 0), "alert": (255, 0, 0)}
CORRIDOR_COLOUR = (0, 255, 255)
TEXT_COLOUR = (255, 255, 255)
DEFAULT_ANOMALY_COLOUR = (255, 0, 255)
UNLISTED_COLOUR = (0, 0, 0)  # labels without a palette entry (void 255 and anything unexpected)


# -- palettes --------------------------------------------------------------------------------------------------------
def palette_lut(palette) -> np.ndarray:
    """(1, 256, 3) uint8 lookup table from a palette: a sequence of RGB triples indexed by label (e.g.
    ``card.palette``: classes 0..K-1 then the anomaly colour at K) or an (N, 3) array, N <= 256. Labels beyond
    the palette map to black. Cached per palette, so passing the same palette every frame costs a hash."""
    if isinstance(palette, np.ndarray) and palette.shape == (1, 256, 3) and palette.dtype == np.uint8:
        return palette
    try:
        key = tuple(tuple(int(v) for v in colour) for colour in np.asarray(palette).reshape(-1, 3).tolist())
    except ValueError as e:
        raise ValueError(f"palette must be a sequence of RGB triples, got {palette!r:.80}") from e
    if np.asarray(palette).ndim != 2 or np.asarray(palette).shape[1] != 3:
        raise ValueError(f"palette must be a sequence of RGB triples (N, 3), got shape {np.asarray(palette).shape}")
    return _lut_for(key)


@lru_cache(maxsize=32)
def _lut_for(key: tuple) -> np.ndarray:
    if not 1 <= len(key) <= 256:
        raise ValueError(f"palette must have 1..256 colours, got {len(key)}")
    if any(not 0 <= v <= 255 for colour in key for v in colour):
        raise ValueError("palette colours must be RGB triples with values in [0, 255]")
    lut = np.empty((1, 256, 3), np.uint8)
    lut[0, :] = UNLISTED_COLOUR
    lut[0, :len(key)] = key
    lut.setflags(write=False)
    return lut


def colourise(label_map: np.ndarray, palette) -> np.ndarray:
    """(H, W) uint8 labels -> (H, W, 3) uint8 RGB with ``palette[label]`` (black for labels past the palette)."""
    labels = _check_labels("label_map", label_map)
    # The palette as a user colour map: one pass of a 256-entry, 3-channel lookup (it assumes no channel order),
    # about twice as fast as three single-channel cv2.LUT calls and a merge (0.5 vs 1.0 ms at 512x1024).
    return cv2.applyColorMap(labels, palette_lut(palette).reshape(256, 1, 3))


def score_to_colour(score: np.ndarray, lo: float, hi: float, colormap: int = cv2.COLORMAP_INFERNO) -> np.ndarray:
    """Heat map of an anomaly score map for debugging: ``lo`` -> dark, ``hi`` -> bright, clipped outside;
    NaN -> black. Returns (H, W, 3) uint8 RGB."""
    s = np.asarray(score)
    if s.ndim != 2 or s.dtype.kind != "f":
        raise ValueError(f"score must be an (H, W) float array, got shape {s.shape} dtype {s.dtype}")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"score_to_colour needs finite lo < hi, got lo={lo!r}, hi={hi!r}")
    f = s.astype(np.float32, copy=False)
    scale = 255.0 / (hi - lo)
    # OpenCV's element-wise passes: (f - lo) * scale, negatives to 0, then a saturating cast caps at 255.
    g = cv2.addWeighted(f, scale, f, 0.0, -lo * scale)
    cv2.threshold(g, 0.0, 0.0, cv2.THRESH_TOZERO, dst=g)
    grey = cv2.convertScaleAbs(g)
    bgr = cv2.applyColorMap(grey, colormap)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    nan = np.isnan(f)
    if nan.any():
        rgb[nan] = 0
    return rgb


# -- the overlay -----------------------------------------------------------------------------------------------------
def overlay(rgb: np.ndarray, open_set_map: np.ndarray | None, palette, anomaly_label: int, alpha: float,
            score: np.ndarray | None = None, tau: float | None = None, alert_state: AlertState | None = None,
            corridor_polygon=None, text: str | None = None) -> np.ndarray:
    """The RViz view: open-set colours blended on the camera image, anomalies highlighted, corridor, boxes, text.

    rgb: (H, W, 3) uint8 camera image. open_set_map: (H, W) uint8 open-set labels (K = ``anomaly_label`` where the
    score exceeds tau, paper section 5.6); if None it is not drawn, and anomalies come from ``score > tau`` when
    both are given. palette: colours indexed by label, ``palette[anomaly_label]`` is the anomaly colour.
    alpha in [0, 1]: opacity of the class colours. Anomalous pixels are blended with opacity sqrt(alpha) (stronger
    than the classes at every alpha < 1) and outlined in the anomaly colour. alpha = 0 switches every colour layer
    off: the result equals ``rgb`` apart from the drawings asked for (corridor, alert boxes, text).
    alert_state: draws its boxes, coloured by its state.
    corridor_polygon: normalised vertices (as AlertConfig.corridor).
    text: one status line drawn top left (``status_text`` builds the usual one).
    """
    image = _check_rgb(rgb)
    h, w = image.shape[:2]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} is outside its valid range [0, 1]")
    if not 0 <= int(anomaly_label) <= 254:
        raise ValueError(f"anomaly_label={anomaly_label!r} is outside its valid range [0, 254] (255 is void)")
    labels = None
    if open_set_map is not None:
        labels = _check_labels("open_set_map", open_set_map, (h, w))
    anomalous = None
    if alpha > 0.0:
        if labels is not None:
            # Not cv2.compare: OpenCV 5 takes a 1x1 array against a scalar for an 'array op array' size mismatch.
            anomalous = np.equal(labels, anomaly_label).view(np.uint8) * np.uint8(255)
        elif score is not None and tau is not None:
            s = np.asarray(score)
            if s.shape != (h, w):
                raise ValueError(f"score {s.shape} and rgb {(h, w)} differ in shape")
            anomalous = np.greater(s, tau).view(np.uint8) * np.uint8(255)

    if alpha > 0.0 and labels is not None:
        out = cv2.addWeighted(image, 1.0 - alpha, colourise(labels, palette), alpha, 0.0)
    else:
        out = image.copy()

    if anomalous is not None and cv2.countNonZero(anomalous):
        colour = _anomaly_colour(palette, anomaly_label)
        strength = float(np.sqrt(alpha))
        # Blend only the anomalous box: usually a small part of the frame.
        x, y, bw, bh = cv2.boundingRect(anomalous)
        src = image[y:y + bh, x:x + bw]
        strong = cv2.addWeighted(src, 1.0 - strength, _solid(bh, bw, colour), strength, 0.0)
        cv2.copyTo(strong, anomalous[y:y + bh, x:x + bw], out[y:y + bh, x:x + bw])
        _outline(out, anomalous, (x, y, bw, bh), colour, _thickness(h, w))

    if corridor_polygon is not None:
        pts = polygon_to_pixels(corridor_polygon, h, w)
        cv2.polylines(out, [pts], True, CORRIDOR_COLOUR, _thickness(h, w), cv2.LINE_AA, shift=_SHIFT)

    if alert_state is not None:
        colour = STATE_COLOURS.get(alert_state.state, STATE_COLOURS["alert"])
        t = _thickness(h, w) + (1 if alert_state.state == "alert" else 0)
        for box in alert_state.boxes:
            x0, y0 = max(0, min(w - 1, box[0])), max(0, min(h - 1, box[1]))
            x1, y1 = max(0, min(w - 1, box[2] - 1)), max(0, min(h - 1, box[3] - 1))  # cv2 corners are inclusive
            cv2.rectangle(out, (x0, y0), (x1, y1), colour, t, cv2.LINE_8)

    if text:
        _draw_text(out, text)
    return out


def status_text(alert_state: AlertState | None, latency_s: float | None = None, tau: float | None = None) -> str:
    """The overlay's status line, e.g. ``ALERT 2 boxes corridor 3.1% peak 4.20 tau 1.50 latency 42 ms``."""
    parts = []
    if alert_state is not None:
        parts.append(alert_state.state.upper())
        if alert_state.boxes:
            parts.append(f"{len(alert_state.boxes)} box{'es' if len(alert_state.boxes) != 1 else ''}")
        parts.append(f"corridor {100.0 * alert_state.corridor_fraction:.1f}%")
        if np.isfinite(alert_state.peak_score):
            parts.append(f"peak {alert_state.peak_score:.2f}")
    if tau is not None:
        parts.append(f"tau {tau:.2f}")
    if latency_s is not None and np.isfinite(latency_s):
        parts.append(f"latency {1000.0 * latency_s:.0f} ms")
    return " ".join(parts)


# -- helpers ---------------------------------------------------------------------------------------------------------
def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"rgb must be an (H, W, 3) uint8 image, got shape {a.shape} dtype {a.dtype}")
    # OpenCV cannot wrap negative or channel-gapped strides (e.g. a BGR view reversed with [..., ::-1]).
    if a.strides[2] != 1 or a.strides[1] != 3 or a.strides[0] < 3 * a.shape[1]:
        a = np.ascontiguousarray(a)
    return a


def _check_labels(name: str, labels: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ValueError(f"{name} must be an (H, W) uint8 label map, got shape {a.shape} dtype {a.dtype}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} {a.shape} and rgb {shape} differ in shape")
    if a.strides[1] != 1 or a.strides[0] < a.shape[1]:
        a = np.ascontiguousarray(a)
    return a


def _anomaly_colour(palette, anomaly_label: int) -> tuple[int, int, int]:
    """``palette[anomaly_label]``, or magenta when the palette stops before the anomaly label."""
    lut = palette_lut(palette)
    size = 256 if isinstance(palette, np.ndarray) and palette.shape == (1, 256, 3) else len(palette)
    if anomaly_label < size:
        return tuple(int(v) for v in lut[0, anomaly_label])
    return DEFAULT_ANOMALY_COLOUR


def _outline(out: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], colour, thickness: int) -> None:
    """Paint the boundary of the mask's regions (holes included) `thickness` pixels wide, half inside, half outside.

    A morphological gradient over the regions' box: the noisy masks of a real score map have thousands of contour
    vertices, and tracing then drawing them cost 16 ms at 512x1024 where the gradient costs under 1 ms.
    """
    h, w = mask.shape
    r = max(1, thickness // 2)
    x, y, bw, bh = box
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + bw + r), min(h, y + bh + r)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    edge = cv2.morphologyEx(mask[y0:y1, x0:x1], cv2.MORPH_GRADIENT, kernel, borderType=cv2.BORDER_CONSTANT,
                            borderValue=0)
    if thickness == 1:
        edge = cv2.bitwise_and(edge, mask[y0:y1, x0:x1])  # the inner pixel only
    cv2.copyTo(_solid(y1 - y0, x1 - x0, colour), edge, out[y0:y1, x0:x1])


def _solid(h: int, w: int, colour) -> np.ndarray:
    # Filling a 3-channel array with a colour through numpy broadcasting is slow (~15 ms at 512x1024);
    # three 2-D fills and a merge cost well under 1 ms.
    return cv2.merge([np.full((h, w), c, np.uint8) for c in colour])


def _thickness(h: int, w: int) -> int:
    """Line width that stays visible when RViz scales the image down: 2 px at 512x1024."""
    return max(1, round(min(h, w) / 256))


def _draw_text(out: np.ndarray, text: str) -> None:
    h, w = out.shape[:2]
    scale = max(0.35, min(h, w) / 900.0)
    thickness = max(1, round(scale * 1.6))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, th // 3)
    x1, y1 = min(w, tw + 2 * pad), min(h, th + base + 2 * pad)
    # Darken the band under the text so it reads on sky and on snow.
    band = out[0:y1, 0:x1]
    band //= 3
    cv2.putText(out, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, thickness, cv2.LINE_AA)
