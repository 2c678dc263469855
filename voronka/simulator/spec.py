"""The demo company as data: its pipelines, stages, people, lead sources and the generating
parameters. `company.py` turns this description into deals and events; `params` in the result is
this description (plus what was derived from it) so tests and docs can check the data against it.

Effects are log-odds added to the pipeline's base (engaged deals only, see `unanswered_share`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    crm_probability: float
    median_days: float  # median stay in the stage before the next move (lognormal)
    sigma: float  # lognormal shape of that stay: the tail is heavy
    skip_probability: float = 0.0  # a passing deal jumps over the stage
    drop_weight: float = 0.0  # relative share of engaged lost deals lost in this stage


@dataclass(frozen=True)
class Owner:
    name: str
    weight: float  # share of new deals while active
    skill: float  # log-odds
    active_from: float = 0.0  # fraction of the history when the owner starts taking deals
    active_to: float = 1.0  # ... and stops (left the company); after 1.0 = still there


@dataclass(frozen=True)
class LeadSource:
    name: str
    weight: float
    effect: float  # log-odds
    cost_per_lead: float  # in the pipeline currency; drives marketing_spend


@dataclass(frozen=True)
class Segment:
    name: str
    weight: float
    effect: float  # log-odds
    amount_median: float  # in the pipeline currency (lognormal)
    amount_sigma: float
    cycle_days: float  # typical created -> close, sets the first expected_close_date
    speed: float  # multiplies every stay: enterprise deals move slower


@dataclass(frozen=True)
class Choice:
    name: str
    weight: float
    currency: str | None = None  # regions only: a region may sell in another currency


@dataclass(frozen=True)
class Holiday:
    month: int
    first_day: int
    last_day: int
    factor: float  # multiplies the creation rate on those days


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    currency: str
    share: float  # of all deals
    stages: tuple[Stage, ...]  # open stages in order
    won_stage: str
    lost_stage: str
    base_logit: float  # win log-odds of an answered deal with zero effects
    unanswered_share: float  # new leads nobody answers: lost in the first stage
    unanswered_close_median_days: float  # ... after this long the manager closes them
    unanswered_close_sigma: float
    growth_per_year: float  # log growth of the creation rate
    weekday_factors: tuple[float, ...]  # Monday..Sunday
    month_factors: tuple[float, ...]  # January..December
    holidays: tuple[Holiday, ...]
    creation_hour_utc_mean: float
    creation_hour_utc_sd: float
    owners: tuple[Owner, ...]
    lead_sources: tuple[LeadSource, ...]
    segments: tuple[Segment, ...]
    regions: tuple[Choice, ...]
    products: tuple[Choice, ...]
    no_answer_reason: str
    lost_reasons_early: tuple[Choice, ...]  # reasons when lost in the second stage
    lost_reasons_late: tuple[Choice, ...]  # ... in the last open stage; mixed in between
    amount_rounding: float
    amount_minimum: float


@dataclass(frozen=True)
class FxSpec:
    currency: str
    center: float  # USD per unit of `currency`
    low: float
    high: float
    daily_sigma: float  # of the log rate
    reversion_per_day: float  # pull of the log rate back to the center


@dataclass(frozen=True)
class CompanySpec:
    pipelines: tuple[PipelineSpec, ...]
    fx: tuple[FxSpec, ...]
    reporting_currency: str = "USD"
    noise_sd: float = 0.3  # per-deal latent log-odds noise
    speed_sigma: float = 0.35  # per-deal lognormal pace multiplier
    lost_linger: float = 1.8  # a stay that ends in a loss lasts this much longer
    backward_share: float = 0.038  # answered deals that go back one stage and forward again (~3% of all)
    backward_stay_median_days: float = 2.0
    reopen_share: float = 0.015  # answered deals lost once, reopened, closed later
    reopen_delay_median_days: float = 25.0
    reopen_delay_sigma: float = 0.7
    max_stay_days: float = 720.0
    expected_close_sigma: float = 0.3  # noise of the first expected close around the cycle
    push_probability: float = 0.45  # an overdue open deal gets its expected close moved out
    push_mean_days: float = 30.0
    max_pushes: int = 3
    target_multiplier: tuple[float, float] = (1.05, 1.25)  # targets vs expected bookings
    spend_noise_sigma: float = 0.15
    title_quote_share: float = 0.06  # titles written with ASCII quotes
    title_newline_share: float = 0.01  # titles with a second line


def _open(*rows: tuple) -> tuple[Stage, ...]:
    return tuple(Stage(*r) for r in rows)


B2B = PipelineSpec(
    name="Продажи B2B",
    currency="RUB",
    share=0.55,
    stages=_open(
        # name, crm_probability, median_days, sigma, skip_probability, drop_weight
        ("Новый лид", 0.05, 0.8, 1.3, 0.0, 0.0),
        ("Взяли в работу", 0.10, 3.0, 1.0, 0.05, 0.30),
        ("Квалифицирован", 0.20, 5.0, 0.9, 0.20, 0.25),
        ("Отправлено КП", 0.40, 8.0, 1.0, 0.08, 0.25),
        ("Реквизиты получены", 0.60, 4.0, 0.8, 0.35, 0.08),
        ("Договор/счет отправлен", 0.75, 6.0, 0.9, 0.05, 0.09),
        ("Оплата получена", 0.90, 3.0, 0.7, 0.25, 0.03),
    ),
    won_stage="Успешно реализовано",
    lost_stage="Закрыто и не реализовано",
    base_logit=-0.75,
    unanswered_share=0.33,
    unanswered_close_median_days=10.0,
    unanswered_close_sigma=0.8,
    growth_per_year=0.25,
    weekday_factors=(1.0, 1.05, 1.0, 0.95, 0.85, 0.12, 0.06),
    month_factors=(0.85, 1.0, 1.05, 1.0, 0.9, 1.0, 0.9, 0.9, 1.05, 1.05, 1.05, 1.1),
    holidays=(Holiday(1, 1, 8, 0.15), Holiday(1, 9, 14, 0.7), Holiday(2, 23, 23, 0.3),
              Holiday(3, 8, 8, 0.3), Holiday(5, 1, 11, 0.5), Holiday(6, 12, 12, 0.3),
              Holiday(11, 4, 4, 0.3), Holiday(12, 31, 31, 0.2)),
    creation_hour_utc_mean=9.5,  # Moscow is UTC+3: the working day
    creation_hour_utc_sd=2.8,
    owners=(
        Owner("Алексей Смирнов", 1.2, 0.45),
        Owner("Мария Иванова", 1.0, 0.30),
        Owner("Дмитрий Кузнецов", 1.0, 0.0),
        Owner("Елена Попова", 0.9, -0.20),
        Owner("Сергей Васильев", 1.0, -0.50, 0.0, 0.7),
        Owner("Ольга Соколова", 0.8, 0.20, 0.35),
        Owner("Игорь Морозов", 0.9, -0.30, 0.6),
        Owner("Наталья Волкова", 0.7, 0.10),
    ),
    lead_sources=(
        LeadSource("Сайт", 0.33, 0.0, 1800.0),
        LeadSource("Рекомендация", 0.12, 0.90, 400.0),
        LeadSource("Холодный звонок", 0.20, -0.70, 2200.0),
        LeadSource("Выставка", 0.07, 0.30, 9000.0),
        LeadSource("Реклама", 0.22, -0.35, 2600.0),
        LeadSource("Входящий звонок", 0.06, 0.20, 1000.0),
    ),
    segments=(
        Segment("SMB", 0.60, 0.25, 180_000.0, 0.9, 30.0, 0.8),
        Segment("Mid-Market", 0.30, 0.0, 900_000.0, 1.0, 60.0, 1.0),
        Segment("Enterprise", 0.10, -0.50, 4_500_000.0, 1.1, 120.0, 1.8),
    ),
    regions=(Choice("Москва", 0.38), Choice("Санкт-Петербург", 0.17), Choice("Урал", 0.12),
             Choice("Поволжье", 0.12), Choice("Сибирь", 0.11), Choice("Юг", 0.10)),
    products=(Choice("Оборудование", 0.35), Choice("Монтаж и пусконаладка", 0.20),
              Choice("Сервисный контракт", 0.20), Choice("Расходные материалы", 0.25)),
    no_answer_reason="Нет ответа",
    lost_reasons_early=(Choice("Не целевой", 0.30), Choice("Нет бюджета", 0.25),
                        Choice("Нет ответа", 0.30), Choice("Отложили покупку", 0.15)),
    lost_reasons_late=(Choice("Дорого", 0.35), Choice("Выбрали конкурента", 0.30),
                       Choice("Отложили покупку", 0.15), Choice("Нет бюджета", 0.10),
                       Choice("Нет ответа", 0.10)),
    amount_rounding=100.0,
    amount_minimum=5_000.0,
)

SAAS = PipelineSpec(
    name="SaaS",
    currency="USD",
    share=0.45,
    stages=_open(
        ("Lead", 0.05, 0.3, 1.4, 0.0, 0.0),
        ("Discovery", 0.15, 5.0, 0.9, 0.10, 0.40),
        ("Demo", 0.30, 7.0, 0.9, 0.15, 0.30),
        ("Proposal", 0.55, 10.0, 1.0, 0.05, 0.20),
        ("Negotiation", 0.80, 12.0, 1.0, 0.30, 0.10),
    ),
    won_stage="Closed Won",
    lost_stage="Closed Lost",
    base_logit=-0.9,
    unanswered_share=0.06,
    unanswered_close_median_days=14.0,
    unanswered_close_sigma=0.7,
    growth_per_year=0.40,
    weekday_factors=(1.0, 1.05, 1.05, 1.0, 0.85, 0.10, 0.07),
    month_factors=(1.0, 1.0, 1.05, 1.0, 1.0, 0.95, 0.9, 0.7, 1.05, 1.05, 1.0, 0.8),
    holidays=(Holiday(12, 20, 31, 0.4), Holiday(1, 1, 2, 0.4), Holiday(11, 26, 27, 0.5),
              Holiday(7, 4, 4, 0.5)),
    creation_hour_utc_mean=15.0,  # Europe's afternoon, America's morning
    creation_hour_utc_sd=3.5,
    owners=(
        Owner("Emily Carter", 1.1, 0.40),
        Owner("James Wilson", 1.0, 0.10),
        Owner("Sophia Martinez", 1.0, 0.25),
        Owner("Michael Brown", 1.0, -0.30),
        Owner("Olivia Johnson", 0.9, 0.0, 0.5),
        Owner("Daniel Lee", 0.9, -0.10, 0.0, 0.8),
        Owner("Hannah Schmidt", 0.8, 0.20, 0.25),
    ),
    lead_sources=(
        LeadSource("Website", 0.30, 0.0, 90.0),
        LeadSource("Referral", 0.10, 0.80, 30.0),
        LeadSource("Outbound", 0.25, -0.60, 160.0),
        LeadSource("Event", 0.08, 0.30, 450.0),
        LeadSource("Paid ads", 0.17, -0.40, 220.0),
        LeadSource("Partner", 0.10, 0.40, 70.0),
    ),
    segments=(
        Segment("SMB", 0.50, 0.30, 7_000.0, 0.8, 21.0, 0.7),
        Segment("Mid-Market", 0.35, 0.0, 28_000.0, 0.9, 45.0, 1.0),
        Segment("Enterprise", 0.15, -0.60, 120_000.0, 1.0, 90.0, 1.7),
    ),
    regions=(Choice("North America", 0.50), Choice("Europe", 0.30, "EUR"), Choice("APAC", 0.12),
             Choice("LATAM", 0.08)),
    products=(Choice("Starter", 0.30), Choice("Professional", 0.35), Choice("Enterprise Suite", 0.15),
              Choice("Analytics add-on", 0.20)),
    no_answer_reason="No response",
    lost_reasons_early=(Choice("No response", 0.30), Choice("Not a fit", 0.30),
                        Choice("No budget", 0.25), Choice("Timing", 0.15)),
    lost_reasons_late=(Choice("Price", 0.35), Choice("Competitor", 0.35), Choice("Timing", 0.15),
                       Choice("No budget", 0.10), Choice("No response", 0.05)),
    amount_rounding=10.0,
    amount_minimum=500.0,
)

DEMO_COMPANY = CompanySpec(
    pipelines=(B2B, SAAS),
    fx=(
        # RUB: 75..100 per USD; EUR: 1.05..1.15 USD
        FxSpec("RUB", 1 / 88.0, 1 / 100.0, 1 / 75.0, 0.006, 0.01),
        FxSpec("EUR", 1.10, 1.05, 1.15, 0.003, 0.01),
    ),
)

# Titles: company names and what is being sold, by pipeline. Some carry commas, quotes and a
# second line so the CSV quoting gets exercised.
TITLE_PARTS = {
    "Продажи B2B": {
        "forms": ("ООО", "АО", "ПАО", "ГК"),
        "names": ("Ромашка", "Вектор", "СтройИнвест", "Северсталь-Сервис", "Альфа-Трейд",
                  "ТехноПром", "Уралмаш-Комплект", "Сибирские сети", "Балтика-Логистик", "Меридиан",
                  "Гранит", "Энергоресурс", "АгроХолдинг Юг", "Волга-Экспо", "Медтехника",
                  "Кристалл", "Орион", "Фабрика окон", "Новые технологии", "ПромСнаб"),
        "subjects": {
            "Оборудование": ("поставка оборудования", "замена оборудования на складе",
                             "оборудование для цеха №2"),
            "Монтаж и пусконаладка": ("монтаж и пусконаладка", "монтаж, пусконаладка и обучение"),
            "Сервисный контракт": ("сервисный контракт на 12 мес.", "годовое обслуживание"),
            "Расходные материалы": ("расходные материалы", "расходники, I квартал"),
        },
        "second_lines": ("повторная заявка", "см. письмо клиента от понедельника"),
    },
    "SaaS": {
        "names": ("Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Industries",
                  "Wayne Enterprises", "Hooli", "Pied Piper", "Vandelay Industries", "Soylent",
                  "Cyberdyne Systems", "Tyrell Corp", "Wonka Industries", "Oceanic Airlines",
                  "Massive Dynamic", "Nordwind GmbH", "Bergmann & Söhne", "Lumière SA",
                  "Kowalski Sp. z o.o.", "Hoffmann, Weber & Co."),
        "kinds": ("new business", "renewal", "expansion", "pilot"),
        "second_lines": ("via partner", "follow-up from the webinar"),
    },
}
