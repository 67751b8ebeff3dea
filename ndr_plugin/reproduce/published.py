"""Published numbers shown beside a reproduction (PSNR/SSIM, PromptIR protocol: RGB, float, scikit-image SSIM,
images cropped to a multiple of 16). Rows and sources are those of the README tables; each row says where it was
read. Columns are named like the validation sets of our option files, so a row lines up with ``ndr-compare``'s."""
from __future__ import annotations

__all__ = ['PUBLISHED', 'published_markdown']

# setting -> (columns, [(method, values per column + average, source)])
PUBLISHED: dict[str, tuple[tuple[str, ...], list[tuple[str, tuple[str, ...], str]]]] = {
    'aio3': (('SOTS_outdoor', 'Rain100L', 'CBSD68_sigma15', 'CBSD68_sigma25', 'CBSD68_sigma50'), [
        ('AirNet (CVPR\'22)', ('27.94/0.962', '34.90/0.967', '33.92/0.933', '31.26/0.888', '28.00/0.797',
                               '31.20/0.910'), 'quoted in the PromptIR README (prompt-ir-results.png)'),
        ('PromptIR (NeurIPS\'23)', ('30.58/0.974', '36.37/0.972', '33.98/0.933', '31.31/0.888', '28.06/0.799',
                                    '32.06/0.913'), 'PromptIR README (prompt-ir-results.png)'),
        ('NDR (TIP\'24)', ('28.64/0.962', '35.42/0.969', '34.01/0.932', '31.36/0.887', '28.10/0.798',
                           '31.51/0.910'), 'quoted by DPC-Net and the EvoIR README; the NDR paper\'s table unchecked'),
        ('AdaIR (ICLR\'25)', ('31.06/0.980', '38.64/0.983', '34.12/0.935', '31.45/0.892', '28.19/0.802',
                              '32.69/0.918'), 'AdaIR README (figs/adair3d.PNG)'),
        ('MoCE-IR (CVPR\'25)', ('31.34/0.979', '38.57/0.984', '34.11/0.932', '31.45/0.888', '28.18/0.800',
                                '32.73/0.917'), 'MoCE-IR README (assets/results_aio_3.png)'),
    ]),
    'aio5': (('SOTS_outdoor', 'Rain100L', 'CBSD68_sigma25', 'GoPro', 'LOL_v1'), [
        ('AirNet (CVPR\'22)', ('21.04/0.884', '32.98/0.951', '30.91/0.882', '24.35/0.781', '18.18/0.735',
                               '25.49/0.846'), 'IDR\'s table, quoted by InstructIR (table 1) and AdaIR'),
        ('IDR (CVPR\'23)', ('25.24/0.943', '35.63/0.965', '31.60/0.887', '27.87/0.846', '21.34/0.826',
                            '28.34/0.893'), 'quoted by InstructIR (static/tables/table1.png)'),
        ('InstructIR-5D (ECCV\'24, text prompt)', ('27.10/0.956', '36.84/0.973', '31.40/0.887', '29.40/0.886',
                                                   '23.00/0.836', '29.55/0.907'),
         'InstructIR README (static/tables/table1.png)'),
        ('AdaIR (ICLR\'25)', ('30.53/0.978', '38.02/0.981', '31.35/0.889', '28.12/0.858', '23.00/0.845',
                              '30.20/0.910'), 'AdaIR README (figs/adair5d.PNG)'),
        ('MoCE-IR (CVPR\'25)', ('30.48/0.974', '38.04/0.982', '31.34/0.887', '30.05/0.899', '23.00/0.852',
                                '30.58/0.919'), 'MoCE-IR README (assets/results_aio_5.png)'),
        ('DFPIR (CVPR\'25, degradation label)', ('31.64/0.979', '37.62/0.978', '31.29/0.889', '28.82/0.873',
                                                 '23.82/0.843', '30.64/0.913'), 'DFPIR README (fig/5D.jpg)'),
    ]),
}


def published_markdown(setting: str) -> str:
    """The published table of ``setting``, or a line saying that none is bundled."""
    if setting not in PUBLISHED:
        return (f'No published table is bundled for {setting!r}: its numbers are not compared here '
                '(see README, "Reproducing the tables").\n')
    columns, rows = PUBLISHED[setting]
    header = ['method'] + [f'{c} PSNR/SSIM' for c in columns] + ['average PSNR/SSIM', 'source']
    lines = ['Published numbers (not reproduced here), PromptIR protocol: compare them with the "aio" table above.',
             '', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join((method,) + values + (source,)) + ' |' for method, values, source in rows]
    return '\n'.join(lines) + '\n'
