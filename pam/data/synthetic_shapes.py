"""The shapes, colours and categories of the synthetic quick-start data, and their rasterisation.

Each category has its own colour and its own shape, so that a model can name the prompted region
from either. Shapes are polygons (curves are 64-gons), filled without anti-aliasing, so a rendered
region's mask is exactly its set of coloured pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Category:
    name: str  # English category
    zh: str  # Chinese category
    shape: str  # one of SHAPES
    color: str  # English colour word
    color_zh: str  # Chinese colour word
    rgb: tuple[int, int, int]  # fill colour
    definition: str  # English definition
    definition_zh: str  # Chinese definition
    function: str  # English function
    function_zh: str  # Chinese function


CATEGORIES: tuple[Category, ...] = (
    Category(
        "tomato",
        "番茄",
        "circle",
        "red",
        "红色",
        (220, 30, 30),
        "a round, juicy fruit with a smooth skin",
        "一种圆形多汁、表皮光滑的果实",
        "eaten raw in salads or cooked into sauces",
        "可以生吃做沙拉，也可以煮成酱汁",
    ),
    Category(
        "lemon",
        "柠檬",
        "ellipse",
        "yellow",
        "黄色",
        (245, 215, 20),
        "an oval citrus fruit with a sour taste",
        "一种椭圆形、味道很酸的柑橘类水果",
        "used to add a sour flavour to drinks and food",
        "用来给饮料和食物增添酸味",
    ),
    Category(
        "carrot",
        "胡萝卜",
        "triangle",
        "orange",
        "橙色",
        (245, 130, 20),
        "a long, tapering root vegetable",
        "一种细长、一头尖的根茎类蔬菜",
        "eaten raw or cooked as a vegetable",
        "可以生吃，也可以做熟当蔬菜吃",
    ),
    Category(
        "gift box",
        "礼品盒",
        "square",
        "green",
        "绿色",
        (30, 160, 60),
        "a square box wrapped as a present",
        "一个包装成礼物的方形盒子",
        "holds a present to give to someone",
        "用来装送给别人的礼物",
    ),
    Category(
        "kite",
        "风筝",
        "diamond",
        "blue",
        "蓝色",
        (30, 80, 220),
        "a light frame covered with material, flown on a string",
        "一种蒙着材料、用线牵着放飞的轻骨架",
        "flown in the wind for fun",
        "在风中放飞取乐",
    ),
    Category(
        "starfish",
        "海星",
        "star",
        "purple",
        "紫色",
        (140, 40, 180),
        "a sea animal with five arms",
        "一种有五条腕的海洋动物",
        "lives on the sea floor and eats shellfish",
        "生活在海底，以贝类为食",
    ),
    Category(
        "chocolate bar",
        "巧克力棒",
        "rectangle",
        "brown",
        "棕色",
        (110, 60, 20),
        "a flat, oblong block of chocolate",
        "一块扁平的长方形巧克力",
        "eaten as a sweet snack",
        "作为甜食零食食用",
    ),
    Category(
        "donut",
        "甜甜圈",
        "ring",
        "pink",
        "粉色",
        (250, 120, 180),
        "a ring of fried sweet dough",
        "一种油炸的环形甜面团",
        "eaten as a sweet snack with coffee",
        "作为甜点配咖啡食用",
    ),
)

SHAPES = tuple(c.shape for c in CATEGORIES)
SHAPE_WORDS = {
    "circle": "round",
    "ellipse": "oval",
    "triangle": "triangular",
    "square": "square",
    "diamond": "diamond-shaped",
    "star": "star-shaped",
    "rectangle": "rectangular",
    "ring": "ring-shaped",
}
SHAPE_WORDS_ZH = {
    "circle": "圆形",
    "ellipse": "椭圆形",
    "triangle": "三角形",
    "square": "方形",
    "diamond": "菱形",
    "star": "星形",
    "rectangle": "长方形",
    "ring": "环形",
}
BACKGROUNDS = (
    ("white", (248, 248, 248)),
    ("pale blue", (214, 228, 242)),
    ("pale green", (218, 238, 218)),
    ("beige", (238, 228, 206)),
    ("light grey", (214, 214, 214)),
)
DISTRACTOR_RGB = (128, 128, 128)  # small grey shapes that carry no region


def shape_polygons(shape: str, radius: float, angle_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """(outer polygon, hole polygon or None) around the origin, as (N, 2) xy arrays."""
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    hole = None
    if shape == "circle":
        poly = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "ellipse":
        poly = np.stack([np.cos(t), 0.62 * np.sin(t)], 1)
    elif shape == "triangle":
        poly = np.array([[0.0, -1.0], [0.95, 0.9], [-0.95, 0.9]])
    elif shape == "square":
        poly = np.array([[-0.85, -0.85], [0.85, -0.85], [0.85, 0.85], [-0.85, 0.85]])
    elif shape == "diamond":
        poly = np.array([[0.0, -1.0], [0.8, 0.0], [0.0, 1.0], [-0.8, 0.0]])
    elif shape == "star":
        a = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        poly = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    elif shape == "rectangle":
        poly = np.array([[-1.0, -0.5], [1.0, -0.5], [1.0, 0.5], [-1.0, 0.5]])
    elif shape == "ring":
        poly = np.stack([np.cos(t), np.sin(t)], 1)
        hole = 0.5 * poly
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    theta = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    poly = radius * poly @ rot.T
    hole = None if hole is None else radius * hole @ rot.T
    return poly, hole


def shape_mask(
    shape: str, center: tuple[float, float], radius: float, height: int, width: int, angle_deg: float = 0.0
) -> np.ndarray:
    """Boolean (H, W) raster of a shape centred at ``center`` (x, y)."""
    poly, hole = shape_polygons(shape, radius, angle_deg)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon([(float(x + center[0]), float(y + center[1])) for x, y in poly], fill=1)
    if hole is not None:
        draw.polygon([(float(x + center[0]), float(y + center[1])) for x, y in hole], fill=0)
    return np.asarray(canvas, dtype=bool)


def position_words(mask: np.ndarray) -> tuple[str, str]:
    """(English, Chinese) position of a mask's box centre on a 3x3 grid, e.g. ("top left", "左上")."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    cx, cy = (xs.min() + xs.max() + 1) / 2 / w, (ys.min() + ys.max() + 1) / 2 / h
    col = 0 if cx < 1 / 3 else 2 if cx > 2 / 3 else 1
    row = 0 if cy < 1 / 3 else 2 if cy > 2 / 3 else 1
    en = [["top left", "top", "top right"], ["left", "center", "right"], ["bottom left", "bottom", "bottom right"]][
        row
    ][col]
    zh = [["左上方", "上方", "右上方"], ["左侧", "中央", "右侧"], ["左下方", "下方", "右下方"]][row][col]
    return en, zh


def size_words(fraction: float) -> tuple[str, str]:
    """(English, Chinese) size word for an object whose diameter is ``fraction`` of the image side."""
    if fraction < 0.4:
        return "small", "小"
    if fraction < 0.5:
        return "medium", "中等大小"
    return "large", "大"
