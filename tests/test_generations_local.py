"""Every local generation through the real engine: its tiny checkpoint, prompts, sizes, streaming, boxes.

Parametrized over the tiny checkpoints of Qwen2-VL, Qwen2.5-VL, Qwen3-VL (and its Thinking
variant where the chat template matters) and Qwen3.5, each built once per run
(`tiny_checkpoints` in conftest.py) and loaded by the same Auto* path as a real checkpoint.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from demo.engines.base import GenerationSettings, ModelLoadError
from demo.engines.slot import EngineSlot
from demo.engines.tiny import common, ensure_tiny_checkpoint, recipe
from demo.page.handlers import ChatHandlers
from grounding import label_color
from grounding.generations import GENERATIONS, TINY_CHECKPOINTS, generation, tiny_checkpoint_family
from tests.fakes import forced_answer
from tests.helpers import generating, near, parts, shown, wait_until

LOCAL = ["tiny-random", "tiny-random-qwen2.5-vl", "tiny-random-qwen3-vl", "tiny-random-qwen3.5", "tiny-random-qwen4-exp"]
ALL = LOCAL + ["tiny-random-qwen3-vl-thinking"]
CLIP = Path(__file__).resolve().parent.parent / "demo" / "examples" / "rocket-launch.mp4"

# What each config keeps of its real architecture (the official config.json files, scaled down).
STRUCTURE = {
    "tiny-random": ("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", 14),
    "tiny-random-qwen2.5-vl": ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", 14),
    "tiny-random-qwen3-vl": ("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", 16),
    "tiny-random-qwen3-vl-thinking": ("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", 16),
    "tiny-random-qwen3.5": ("qwen3_5", "Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor", 16),
    "tiny-random-qwen4-exp": ("qwen4_exp", "Qwen4ExpForConditionalGeneration", "Qwen3VLProcessor", 16),
}


def test_the_tiny_names_are_the_registrys():
    assert tuple(STRUCTURE) == TINY_CHECKPOINTS  # each has a recipe, checked below
    assert {tiny_checkpoint_family(name) for name in TINY_CHECKPOINTS} == {g.family for g in GENERATIONS if g.local}
    assert tiny_checkpoint_family("tiny-random-qwen3-vl-thinking") == "qwen3-vl"


@pytest.mark.parametrize("name", ALL)
def test_a_tiny_checkpoint_has_the_real_classes_tokens_and_template(tiny_checkpoints, name):
    path = tiny_checkpoints[name]
    config = json.loads((path / "config.json").read_text())
    model_type, architecture, processor_class, patch = STRUCTURE[name]
    assert (config["model_type"], config["architectures"], config["vision_config"]["patch_size"]) == (
        model_type,
        [architecture],
        patch,
    )
    engine = tiny_checkpoints.engine(name)
    assert type(engine.processor).__name__ == processor_class
    assert type(engine.model).__name__ == architecture
    # The real added tokens, in the real order, with the real `special` flags, right after the BPE vocabulary.
    built, variant = recipe(name)
    assert built.__name__.rsplit(".", 1)[1] == STRUCTURE[name][0]  # the module named for its generation
    added = sorted(engine.tokenizer.added_tokens_decoder.items())
    assert [(t.content, t.special) for _, t in added] == list(built.ADDED)
    assert [i for i, _ in added] == list(range(added[0][0], added[0][0] + len(added)))
    assert engine.tokenizer.eos_token == "<|im_end|>" and engine.tokenizer.pad_token == "<|endoftext|>"
    # The official chat template, byte for byte, as the processor saved it.
    template_file = built.TEMPLATES[variant] if variant else built.TEMPLATE
    assert engine.processor.chat_template == common.template(template_file)
    assert template_file in common.TEMPLATE_SOURCES


@pytest.mark.parametrize("name", ALL)
def test_a_build_takes_about_a_second(tiny_checkpoints, name, tmp_path):
    """Once transformers' classes are imported (the session's first build pays that), tokenizer training included."""
    tiny_checkpoints[name]  # imports warm
    common._trained_bpe.cache_clear()
    started = time.perf_counter()
    path = ensure_tiny_checkpoint(name, tmp_path)
    assert time.perf_counter() - started < 5  # 0.1-0.3 s measured here; slack for a busy machine
    assert path.parent == tmp_path and (path / "model.safetensors").is_file()


def test_each_config_keeps_its_generations_structure(tiny_checkpoints):
    def config(name):
        return json.loads((tiny_checkpoints[name] / "config.json").read_text())

    qwen25 = config("tiny-random-qwen2.5-vl")["vision_config"]
    assert qwen25["window_size"] == 112 and qwen25["fullatt_block_indexes"] == [1, 3] and qwen25["depth"] == 4
    qwen3 = config("tiny-random-qwen3-vl")
    assert qwen3["vision_config"]["deepstack_visual_indexes"] == [1, 2]
    assert qwen3["text_config"]["rope_parameters"]["mrope_interleaved"] is True
    qwen35 = config("tiny-random-qwen3.5")["text_config"]
    assert qwen35["layer_types"] == ["linear_attention"] * 3 + ["full_attention"]
    assert qwen35["rope_parameters"]["partial_rotary_factor"] == 0.25
    layers = tiny_checkpoints.engine("tiny-random-qwen3.5").model.model.language_model.layers
    assert [hasattr(layer, "linear_attn") for layer in layers] == [True, True, True, False]


def test_qwen35_linear_attention_runs_in_plain_torch(tiny_checkpoints):
    """No flash-linear-attention or causal-conv1d here: transformers' torch path answers."""
    assert importlib.util.find_spec("fla") is None and importlib.util.find_spec("causal_conv1d") is None
    engine = tiny_checkpoints.engine("tiny-random-qwen3.5")
    settings = GenerationSettings(max_new_tokens=6, min_new_tokens=6)
    assert "".join(engine.stream(question("Hello"), settings, threading.Event()))


@pytest.mark.parametrize("name", ALL)
def test_the_engine_reads_the_family_and_patch_from_the_checkpoint(tiny_checkpoints, name):
    engine = tiny_checkpoints.engine(name)
    family = tiny_checkpoint_family(name)
    assert engine.family == family
    assert engine.patch_size == generation(family).patch_size
    assert engine.resize_factor == generation(family).resize_factor
    assert engine.random_weights


def question(text: str, *parts: dict) -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


IMAGE = {"type": "image", "image": Image.new("RGB", (64, 64))}
VIDEO = {"type": "video", "video": None}  # the template only looks at the type
LABELLED = "Picture 1: <|vision_start|><|image_pad|><|vision_end|>Video 1: <|vision_start|><|video_pad|><|vision_end|>What?"
SECOND = "Picture 2: <|vision_start|><|image_pad|><|vision_end|>And?"
# Each official template's rendering of: system "Be brief.", [image, video, "What?"], answer "A cat.",
# [image, "And?"], with add_generation_prompt and add_vision_id (pictures and videos counted over
# the conversation). Thinking templates open the answer with <think>; Qwen2-VL's adds a default
# system prompt when there is none; Qwen3-VL's and Qwen3.5's do not.
OPEN = {"tiny-random-qwen3-vl-thinking": "<think>\n", "tiny-random-qwen3.5": "<think>\n", "tiny-random-qwen4-exp": "<think>\n"}
DEFAULT_SYSTEM = {"tiny-random": True, "tiny-random-qwen2.5-vl": True}


@pytest.mark.parametrize("name", ALL)
def test_prompts_follow_each_official_template_with_picture_and_video_labels(tiny_checkpoints, name):
    engine = tiny_checkpoints.engine(name)
    opening = OPEN.get(name, "")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        *question("What?", IMAGE, VIDEO),
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        *question("And?", IMAGE),
    ]
    assert engine.render_prompt(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        f"<|im_start|>user\n{LABELLED}<|im_end|>\n"
        "<|im_start|>assistant\nA cat.<|im_end|>\n"
        f"<|im_start|>user\n{SECOND}<|im_end|>\n"
        f"<|im_start|>assistant\n{opening}"
    )
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" if DEFAULT_SYSTEM.get(name) else ""
    assert engine.render_prompt(question("What?", IMAGE, VIDEO)) == (
        f"{system}<|im_start|>user\n{LABELLED}<|im_end|>\n<|im_start|>assistant\n{opening}"
    )


@pytest.mark.parametrize("name", LOCAL)
def test_the_model_reads_each_video_right_after_its_label_in_its_generations_layout(tiny_checkpoints, name):
    """What the processor makes of the template's video (transformers 5.25): Qwen2-VL's and Qwen2.5-VL's
    pads in the template's one pair of markers; Qwen3-VL's and Qwen3.5's `<t seconds>` and markers per
    pair of frames, nothing around them, t the mean of the pair's real times."""
    from demo.media.video import VideoSettings
    from demo.media.video_decode import sample_video
    from tests.test_video_generations import layout

    engine = tiny_checkpoints.engine(name)
    settings = GenerationSettings()
    video = sample_video(str(CLIP), VideoSettings(factor=engine.resize_factor, fps=1.0))
    assert video.timestamps == pytest.approx((0.5, 1.5, 2.5, 3.5))
    inputs = engine.prepare_inputs(question("What?", IMAGE, {"type": "video", "video": video}), settings)
    text = engine.tokenizer.decode(inputs["input_ids"][0])
    picture = "<|image_pad|>" * engine.vision_cost(IMAGE["image"].size, settings).tokens
    written = layout(engine.family, video)
    assert f"<|im_start|>user\nPicture 1: <|vision_start|>{picture}<|vision_end|>Video 1: {written}What?<|im_end|>" in text
    pads = "<|video_pad|>" * (video.visual_tokens // 2)
    if generation(engine.family).video_timing == "timestamps":
        blocks = [f"<{t} seconds><|vision_start|>{pads}<|vision_end|>" for t in ("1.0", "3.0")]
    else:
        blocks = [f"<|vision_start|>{pads * 2}<|vision_end|>"]
    assert written == "".join(blocks)


@pytest.mark.parametrize("name", LOCAL)
@pytest.mark.parametrize("size", [(64, 64), (400, 200), (200, 300), (1000, 90), (37, 29)])
def test_vision_cost_is_what_the_processor_makes_of_the_image(tiny_checkpoints, name, size):
    engine = tiny_checkpoints.engine(name)
    settings = GenerationSettings()
    cost = engine.vision_cost(size, settings)
    inputs = engine.prepare_inputs(question("Where?", {"type": "image", "image": Image.new("RGB", size, "white")}), settings)
    _, grid_h, grid_w = inputs["image_grid_thw"][0].tolist()
    patch = generation(engine.family).patch_size
    assert cost.input_wh == (grid_w * patch, grid_h * patch)
    assert cost.input_wh[0] % engine.resize_factor == 0 and cost.input_wh[1] % engine.resize_factor == 0
    image_token = engine.model.config.image_token_id
    assert cost.tokens == int((inputs["input_ids"][0] == image_token).sum())


@pytest.mark.parametrize("name", LOCAL)
def test_an_answer_streams_and_stop_ends_it(tiny_checkpoints, name):
    engine = tiny_checkpoints.engine(name)
    image = {"type": "image", "image": Image.effect_noise((90, 60), 40).convert("RGB")}
    stop = threading.Event()
    pieces = engine.stream(question("Describe Picture 1.", image), GenerationSettings(max_new_tokens=10**5, min_new_tokens=10**5), stop)
    received = [next(pieces) for _ in range(3)]
    stop.set()
    started = time.monotonic()
    rest = list(pieces)
    assert time.monotonic() - started < 2.0
    assert all(received) and len(received) + len(rest) < 2000
    assert wait_until(lambda: not generating(), timeout=2)


@pytest.mark.parametrize("name", LOCAL)
def test_follow_ups_with_a_video_answer_in_a_session(tiny_checkpoints, name, photos):
    """Every family reuses the session's cache (demo/engines/local/kv_reuse.py); follow-ups answer."""
    from demo.media.video import VideoSettings
    from demo.media.video_decode import sample_video

    engine = tiny_checkpoints.engine(name)
    assert engine.caches.max_bytes > 0
    video = sample_video(str(CLIP), VideoSettings(factor=engine.resize_factor, max_frames=4))
    image = Image.open(photos["chelsea"]).convert("RGB")
    settings = GenerationSettings(max_new_tokens=4, min_new_tokens=4)
    messages = question("What happens?", {"type": "image", "image": image}, {"type": "video", "video": video})
    first = "".join(engine.stream(messages, settings, threading.Event(), session="follow-up"))
    messages += [{"role": "assistant", "content": [{"type": "text", "text": first}]}, *question("And then?")]
    assert "".join(engine.stream(messages, settings, threading.Event(), session="follow-up"))
    assert "follow-up" in engine.caches.sessions()
    engine.forget("follow-up")


def boxes_answer(family: str, inputs: list[tuple[int, int]]) -> str:
    """An answer putting the left half of Picture 1 and the middle of Picture 2 in the family's format."""
    if family == "qwen2-vl":
        return (
            "In Picture 1 <|object_ref_start|>the left half<|object_ref_end|><|box_start|>(0,0),(500,1000)<|box_end|>, "
            "in Picture 2 <|object_ref_start|>the middle<|object_ref_end|><|box_start|>(250,250),(750,750)<|box_end|>"
        )
    if generation(family).relative:
        left, middle = [0, 0, 500, 1000], [250, 250, 750, 750]
    else:  # Qwen2.5-VL: absolute pixels of the resized image the model saw
        (w1, h1), (w2, h2) = inputs
        left, middle = [0, 0, w1 // 2, h1], [w2 // 4, h2 // 4, 3 * w2 // 4, 3 * h2 // 4]
    return (
        f'In Picture 1: [{{"bbox_2d": {left}, "label": "the left half"}}]. '
        f'In Picture 2: ```json\n[{{"bbox_2d": {middle}, "label": "the middle"}}]\n```'
    )


@pytest.mark.parametrize("name", LOCAL)
def test_boxes_land_on_the_right_picture_in_each_familys_coordinates(tiny_checkpoints, name, tmp_path):
    """Force a grounding answer in the family's format through the real generate path and the handlers."""
    engine = tiny_checkpoints.engine(name)
    slot = EngineSlot(name, engine.family)
    slot.fill(engine)
    handlers = ChatHandlers(slot, min_update_interval=0.0)
    files = []
    for file_name, size in (("wide.png", (400, 200)), ("tall.png", (200, 300))):
        Image.new("RGB", size, "white").save(tmp_path / file_name)
        files.append(str(tmp_path / file_name))
    inputs = [engine.vision_cost(size, GenerationSettings()).input_wh for size in ((400, 200), (200, 300))]
    answer = boxes_answer(engine.family, inputs)
    reasoning = "Two pictures, a box on each." if engine.thinking != "none" else ""
    # The prompt opened <think> (thinking on): the model writes its reasoning, </think>, the answer.
    with forced_answer(engine, f"{reasoning}\n</think>\n\n{answer}" if reasoning else answer):
        *_, last = handlers.chat({"text": "Where?", "files": files}, None)
    chatbot, conversation = shown(last), last.conversation
    assert conversation.turns[0].answer == answer  # decoded as generated, markers kept where the family has them
    assert conversation.turns[0].reasoning == reasoning  # apart from the answer (tests/test_thinking.py)
    assert conversation.turns[0].input_sizes == inputs
    annotated = [c["path"] for c in parts(chatbot, "assistant") if isinstance(c, dict)]
    assert len(annotated) == 2
    left, middle = label_color("the left half"), label_color("the middle")
    white = (255, 255, 255)
    with Image.open(annotated[0]) as wide, Image.open(annotated[1]) as tall:  # JPEGs: colours within a few levels
        assert wide.size == (400, 200) and tall.size == (200, 300)
        assert any(near(left, wide.getpixel((x, 100))) for x in range(194, 206))  # right edge of the left half: x = 200
        assert near(white, wide.getpixel((300, 100)))
        assert any(near(middle, tall.getpixel((x, 150))) for x in range(44, 56))  # the middle: (50, 75)-(150, 225)
        assert any(near(middle, tall.getpixel((100, y))) for y in range(219, 231))
        assert near(white, tall.getpixel((100, 150)))


def test_a_model_that_is_not_a_qwen_vl_is_refused_in_one_sentence(tmp_path):
    """A tiny Qwen2 text model: refused from its config, before its weights are read."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from demo.engines.local.engine import TransformersEngine

    config = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not read")  # proof the weights are never opened
    with pytest.raises(ModelLoadError) as refused:
        TransformersEngine(str(tmp_path), device="cpu")
    message = str(refused.value)
    assert "is a 'qwen2' model, not a Qwen vision-language model" in message and "\n" not in message
    assert "Qwen2.5-VL" in message and "Qwen3.5" in message


@pytest.mark.parametrize("name", LOCAL)
def test_the_app_knows_the_family_before_the_model_loads(tiny_checkpoints, name):
    from app import expected_family, parse_args

    family = tiny_checkpoint_family(name)
    assert expected_family(parse_args(["--model", name])) == family
    assert expected_family(parse_args(["--model", str(tiny_checkpoints[name])])) == family  # its config.json


@pytest.mark.parametrize(
    ("argv", "family"),
    [
        (["--model", "Qwen/Qwen3.5-9B"], "qwen3.5"),
        (["--model", "Qwen/Qwen2.5-VL-7B-Instruct"], "qwen2.5-vl"),
        (["--model", "someone/my-model"], "qwen2-vl"),  # nothing says: the default model's
        (["--backend", "openai", "--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--family", "qwen3-vl"], "qwen3-vl"),
    ],
)
def test_the_expected_family_from_names_and_flags(argv, family):
    from app import expected_family, parse_args

    assert expected_family(parse_args(argv)) == family


@pytest.mark.parametrize(("family", "factor"), [("qwen2.5-vl", 28), ("qwen3.5", 32)])
def test_a_video_sent_while_the_model_loads_is_sized_for_the_family_being_loaded(family, factor, photos):
    slot = EngineSlot("loading", family)
    handlers = ChatHandlers(slot)
    updates = handlers.chat({"text": "What happens?", "files": [str(CLIP)]}, None)
    conversation = next(updates).conversation  # "still loading": the turn is there, its video sampled
    slot.fail("stopped by the test")
    list(updates)
    video = conversation.turns[0].attachments[0].video
    assert video.factor == factor and video.frame_wh[0] % factor == 0 and video.frame_wh[1] % factor == 0
    assert handlers.family == family and handlers.preset("Point to", None)["text"] == generation(family).presets["Point to"]


@pytest.mark.parametrize("name", LOCAL)
def test_the_status_line_names_the_family(tiny_checkpoints, name):
    engine = tiny_checkpoints.engine(name)
    title = generation(engine.family).title
    slot = EngineSlot(name, engine.family)
    assert f"({title}," in slot.status_markdown()  # while loading
    slot.fill(engine)
    assert f"**{name}** ({title}) is ready." in slot.status_markdown()


@pytest.mark.parametrize(
    ("dense", "moe_config", "moe_model", "moe_type"),
    [
        ("tiny-random-qwen3-vl", "Qwen3VLMoeConfig", "Qwen3VLMoeForConditionalGeneration", "qwen3_vl_moe"),
        ("tiny-random-qwen3.5", "Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration", "qwen3_5_moe"),
    ],
)
def test_the_mixture_of_experts_checkpoints_run_as_their_generation(tiny_checkpoints, tmp_path, dense, moe_config, moe_model, moe_type):
    """Qwen3-VL-30B-A3B's and Qwen3.5-35B-A3B's kinds: the dense tiny checkpoint's config with experts."""
    import torch
    import transformers

    from demo.engines.local.engine import TransformersEngine

    source = tiny_checkpoints.engine(dense)
    settings = json.loads((tiny_checkpoints[dense] / "config.json").read_text())
    text = {k: v for k, v in settings["text_config"].items() if k not in ("model_type", "intermediate_size")}
    text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32)
    vision = {k: v for k, v in settings["vision_config"].items() if k != "model_type"}
    ids = {k: settings[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config = getattr(transformers, moe_config)(text_config=text, vision_config=vision, **ids)
    torch.manual_seed(0)
    getattr(transformers, moe_model)(config).save_pretrained(tmp_path)
    source.processor.save_pretrained(tmp_path)
    engine = TransformersEngine(str(tmp_path), device="cpu", dtype="float32")
    assert (engine.model.config.model_type, engine.family) == (moe_type, source.family)
    image = {"type": "image", "image": Image.effect_noise((90, 60), 40).convert("RGB")}
    answer = engine.stream(question("Describe Picture 1.", image), GenerationSettings(max_new_tokens=4, min_new_tokens=4), threading.Event())
    assert "".join(answer)
