# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Prompt templates that turn class names into CLIP text prompts.

A template is a string with exactly one ``{}`` placeholder, filled with
``template.format(class_name)``. :func:`resolve_templates` accepts the forms
used in configs:

- ``None`` or ``'{}'``: the raw class name;
- a single string with ``{}``, e.g. ``'a photo of a {}.'``;
- a list/tuple of such strings (or of one-argument callables, which are
  called with ``'{}'`` to recover their string form);
- a named set: ``'vild'`` (the 14 prompts of ViLD, Gu et al. 2022) or
  ``'imagenet'`` (the 80 ImageNet prompts of CLIP, Radford et al. 2021, as
  shipped by open_clip).
"""
from string import Formatter
from typing import Callable, Optional, Sequence, Tuple, Union

TemplatesType = Optional[Union[str, Sequence[Union[str, Callable[[str], str]]]]]

#: The 14 prompt templates of ViLD (Gu et al., ICLR 2022).
VILD_TEMPLATES: Tuple[str, ...] = (
    'a photo of a {}.',
    'This is a photo of a {}',
    'There is a {} in the scene',
    'There is the {} in the scene',
    'a photo of a {} in the scene',
    'a photo of a small {}.',
    'a photo of a medium {}.',
    'a photo of a large {}.',
    'This is a photo of a small {}.',
    'This is a photo of a medium {}.',
    'This is a photo of a large {}.',
    'There is a small {} in the scene.',
    'There is a medium {} in the scene.',
    'There is a large {} in the scene.',
)


def imagenet_templates() -> Tuple[str, ...]:
    """CLIP's 80 ImageNet prompt templates as ``'...{}...'`` strings.

    open_clip stores them as one-argument callables; calling each with
    ``'{}'`` gives back the format string.
    """
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return tuple(
        _check_template(t('{}'), f'imagenet[{i}]') for i, t in enumerate(OPENAI_IMAGENET_TEMPLATES))


NAMED_TEMPLATES = {
    'vild': lambda: VILD_TEMPLATES,
    'imagenet': imagenet_templates,
}


def _check_template(template: str, where: str) -> str:
    """Return ``template`` if it has exactly one ``{}`` and formats cleanly."""
    if not isinstance(template, str):
        raise TypeError(f'Prompt template {where} must be a str with one '
                        f"'{{}}', got {type(template).__name__}: {template!r}.")
    try:
        fields = [field[1:] for field in Formatter().parse(template) if field[1] is not None]
    except ValueError:  # unbalanced braces
        fields = None
    if fields != [('', '', None)]:
        raise ValueError(f'Prompt template {where} ({template!r}) must contain exactly one '
                         "'{}' placeholder (write literal braces as '{{' and '}}'); named "
                         f'template sets are {sorted(NAMED_TEMPLATES)}.')
    return template


def resolve_templates(templates: TemplatesType = None) -> Tuple[str, ...]:
    """Turn a template spec into a tuple of format strings.

    Args:
        templates (str | Sequence[str | Callable] | None): See the module
            docstring. Defaults to None (the raw class name).

    Returns:
        tuple[str]: T >= 1 templates, each with exactly one ``{}``.

    Raises:
        ValueError: An unknown named set, an empty list, or a template
            without exactly one ``{}``.
        TypeError: A template that is neither a string nor a callable.
    """
    if templates is None:
        return ('{}', )
    if isinstance(templates, str):
        if templates in NAMED_TEMPLATES:
            return tuple(NAMED_TEMPLATES[templates]())
        if '{' not in templates and '}' not in templates:
            raise ValueError(f'Unknown prompt template set {templates!r}: expected one of '
                             f"{sorted(NAMED_TEMPLATES)}, or a string with a '{{}}' "
                             "placeholder such as 'a photo of a {}.'.")
        return (_check_template(templates, repr(templates)), )
    if not isinstance(templates, Sequence):
        raise TypeError('templates must be None, a str or a sequence of str, '
                        f'got {type(templates).__name__}.')
    if len(templates) == 0:
        raise ValueError('templates is an empty sequence; use None for the '
                         'raw class name.')
    resolved = []
    for i, template in enumerate(templates):
        if callable(template) and not isinstance(template, str):
            template = template('{}')
        resolved.append(_check_template(template, f'templates[{i}]'))
    return tuple(resolved)


def warn_truncated_prompts(tokenizer, prompts: Sequence[str], tokens) -> None:
    """Warn about the prompts that the tokenizer cut to its context length.

    open_clip's tokenizers truncate silently (CLIP's context is 77 tokens,
    start and end of text included): names that differ only after the cut
    get the same embedding. Rows of ``tokens`` that use every position are
    checked with the tokenizer's ``encode`` (an exact fit is no cut); a
    tokenizer without ``encode`` has them all reported.

    Args:
        tokenizer: the tokenizer that made ``tokens``.
        prompts (Sequence[str]): the N prompts.
        tokens (Tensor): ``(N, context_length)`` token ids, 0 for padding.
    """
    import warnings

    from mmmaskclip.utils import InputWarning
    context = tokens.shape[-1]
    encode = getattr(tokenizer, 'encode', None)
    cut = []
    for index in (tokens[:, -1] != 0).nonzero()[:, 0].tolist():
        length = len(encode(prompts[index])) + 2 if encode is not None else None
        if length is None or length > context:
            text = prompts[index] if len(prompts[index]) <= 60 else prompts[index][:57] + '...'
            cut.append(f'{text!r} ({length} tokens)' if length else repr(text))
    if cut:
        more = f' and {len(cut) - 5} more' if len(cut) > 5 else ''
        warnings.warn(
            f"{len(cut)} class name prompt(s) exceed CLIP's {context}-token context and are "
            'truncated (names that differ only after the cut get the same embedding; shorten '
            f'them): {", ".join(cut[:5])}{more}.',
            InputWarning,
            stacklevel=2)
