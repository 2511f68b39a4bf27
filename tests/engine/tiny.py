"""Tiny randomly-initialised backbones for fast tests (no pretrained weights, no network)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from modeling.engine.backbones.specs import BackboneSpec, spec_for_folder

# ASCII printable plus frequent CJK characters and full-width punctuation, so typical test texts tokenise
# without <unk>; extra characters come from `texts`.
_COMMON_CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么"
    "心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分"
    "将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重"
    "被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住"
    "员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制"
    "解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非"
    "流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量"
    "空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委"
    "付款退货换订单物流快递包裹售后账户登录密码支旅酒店机票航班延误银行卡扣费充值余额客服投诉发票优惠券积分会员"
    "，。！？、；：“”‘’（）《》【】…—"
)
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocabulary(texts: Iterable[str]) -> dict[str, int]:
    chars = [chr(c) for c in range(33, 127)] + list(_COMMON_CJK)
    for text in texts:
        chars.extend(ch for ch in text if not ch.isspace())
    vocab = {tok: i for i, tok in enumerate(_SPECIAL)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    return vocab


def _tokenizer(vocab: dict[str, int], kind: str):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    # Whitespace separates words; every remaining character is its own token.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    if kind == "encoder":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        eos_token="[SEP]",
        model_max_length=128,
    )


def make_tiny_backbone(
    path: Path | str, kind: str = "encoder", texts: Iterable[str] = (), hidden: int = 32, layers: int = 2, seed: int = 0
) -> BackboneSpec:
    """Save a tiny random BERT (kind="encoder") or Qwen2 (kind="decoder") folder at `path` and return its spec.

    Deterministic for a given seed and vocabulary, so its fingerprint is stable across runs.
    """
    import torch
    from transformers import BertConfig, BertModel, Qwen2Config, Qwen2ForCausalLM

    if kind not in ("encoder", "decoder"):
        raise ValueError("kind must be 'encoder' or 'decoder'")
    path = Path(path)
    vocab = _vocabulary(texts)
    torch.manual_seed(seed)
    if kind == "encoder":
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=hidden * 2,
            max_position_embeddings=128,
            pad_token_id=vocab["[PAD]"],
        )
        model = BertModel(config, add_pooling_layer=False)
    else:
        config = Qwen2Config(
            vocab_size=len(vocab),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=hidden * 2,
            max_position_embeddings=128,
            pad_token_id=vocab["[PAD]"],
            eos_token_id=vocab["[SEP]"],
            tie_word_embeddings=True,
        )
        model = Qwen2ForCausalLM(config)
    model.eval()
    model.save_pretrained(path)
    _tokenizer(vocab, kind).save_pretrained(path)
    return spec_for_folder(path)
