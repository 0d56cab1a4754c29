"""What a question is about, and whether a text is about it.

A question is read into its main concepts: runs of specific words between the generic ones ("Is
*laparoscopic cholecystectomy* safe in *elderly patients*?"), each with a role read off the question's shape
(a simple PICO reading: the subject of a yes/no question is its intervention or exposure; "in/among/for ...
patients" is its population; the rest are outcomes or topics). The first intervention (or, in a wh-question,
the most specific topic) is the *primary* concept: an answer that is not about it is not an answer.

Matching is by stemmed words (Porter2; British and American spellings folded; hyphens and case ignored),
with synonyms from the retrieved articles themselves: abbreviations they define ("laparoscopic
cholecystectomy (LC)"), their MeSH headings (inverted headings such as "Cholecystectomy, Laparoscopic"
read both ways) and keywords. A concept of several words is mentioned when most of its words are.

The population of a question and of a study are read into age groups (children, adolescents, adults, older
adults...) from words, ages ("mean age 10.4 years", "aged ≥ 65") and MeSH check tags, so that an answer about
the elderly drawn from a paediatric cohort can be flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

# ----- words ------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\b(?:type|stage|grade|phase|class)\s+(?:\d{1,2}|i{1,3}v?|iv|v)\b|[^\W_]+(?:['’-][^\W_]+)*",
    re.I,
)

# Words that never make a concept on their own: function words, question words, the verbs and adjectives
# questions are built with, and clinical words so common that they say nothing about the topic.
GENERIC = frozenset(
    """a about above according across after again against all almost along also although always am among an
    and another any anything are around as at available be because become becomes been before being below
    between beyond both but by can cannot could did do does doing done down due during each either else
    enough especially even ever every few for from further furthermore had has have having he her here how
    however i if in including into is it its itself just less like likely many may me might more most much
    must my near need needed needs neither never no nor not now of off often on once one only onto or other
    otherwise our out over own per perhaps possible possibly rather really regarding same several shall she
    should since so some such than that the their them themselves then there therefore these they this those
    though through thus to too toward towards under unless until up upon us usually very via was we well were
    what whatever when where whether which while who whom whose why will with within without would yet you
    your

    able absence absent accurate achieve act acts adequate affect affected affecting affects aid aim alter
    alters apply applied appropriate approach approaches assess assessed assessing associate associated
    association associations available beneficial benefit benefits best better cause caused causes causing
    change changed changes characterize characterized characteristic clinical clinically common commonly
    compare compared comparison concern consider considered contribute contributes control correct correlate
    correlated correlation currently decrease decreased decreases define defined degree delay delayed
    describe described detect detected determine develop developed developing difference differences
    different differ do effect effective effectively effectiveness effects efficacious efficacy enhance
    enhanced enhances ensure evaluate evaluated evaluation evidence exist exists expected explain factor
    factors feasible find finding findings follow found frequent frequently function functions general
    generally give given good great greater help helpful helps high higher identify identified impact
    impacts important improve improved improvement improves improving include includes increase increased
    increases increasing independent indicate indicated individual individuals induce induced induces
    influence influenced influences influencing involve involved involvement involves issue kind known lead
    leads less level levels linked list low lower main major make makes mean means measure measured mediate
    mediated method methods modify name named necessary new normal number observed obtain occur occurs
    offer offered outcome outcomes part particular perform performed performing play plays potential
    potentially predict predicted predictive predictor predictors prefer present presence prevent prevented
    prevents primary probably produce produced promote promotes proper properly protect protective provide
    provided purpose question range rate rates reason recommend recommended reduce reduced reduces reducing
    related relation relationship relevant reliable rely remain report reported represent require required
    requires respect response result results reveal right risk role roles routine safe safely safer safety
    second serve serves show showed shown significance significant significantly similar specific status
    still studied studies study studying success successful suitable superior support supported sure take
    taken term terms test tested time times true truly type typical use used useful usefulness uses using
    valid validity value valuable various way ways whole work works worse worth yes combined combine
    continue continued shorten shortens shortened lengthen prolong prolongs raise raises elevate elevated
    worsen worsens aggravate inhibit inhibits suppress suppresses attenuate attenuates alleviate alleviates
    relieve relieves lessen hasten accelerate facilitate facilitates benefit benefits harm harms lead
    undergo undergoing undergone receive received receiving given administered administration
    recommended recommendation justify justified warrant warranted indicated preferred acceptable
    worthwhile necessary sufficient insufficient optimal better superior inferior equivalent comparable
    describe list name explain tell summarize summarise link links
    advantage advantages disadvantage alternative alternatives interest discrepancy discrepancies uniformity
    consistency variation variations variability trend trends prediction predictions simplification
    production novel model models confounded confounding long-term short-term know knows knowledge
    instead replace replaces replaced confer confers preventing starting started option options approach
    place places key mechanism mechanisms etiologic aetiologic etiological implication implications
    contribution feasibility possibility usefulness accuracy utility protein proteins gene genes mutation
    mutations variant variants pathogenic abundant stand pill pills tablet molecule molecules

    patient patients people person persons subject subjects participant participants case cases group
    groups population populations sample samples cohort cohorts human humans disease diseases disorder
    disorders condition conditions treatment treatments therapy therapies therapeutic intervention
    interventions management treat treated treating drug drugs medication medications agent agents care
    year years month months week weeks day days age aged old""".split()  # noqa: SIM905
)

# Words that mark a phrase as the population of the question rather than its intervention or outcome.
_POPULATION_WORDS = frozenset(
    """patient patients people persons subjects individuals adults adult children child infants infant
    neonates neonate newborns newborn adolescents adolescent teenagers youth women woman men man girls boys
    mothers pregnant pregnancy elderly older aged seniors nursing residents students survivors smokers
    athletes veterans workers volunteers population populations""".split()  # noqa: SIM905
)
# The noun a wh-question asks for ("Which *enzyme* ...", "What is the *mechanism of action* of ...") says what
# kind of answer is wanted, not what the question is about.
_WH_START = re.compile(
    r"^\s*(?:which|what|who|whom|whose|when|where|why|how|list|name|describe|explain|give|summari[sz]e|"
    r"enumerate|tell)\b",
    re.I,
)
_AUXILIARY = frozenset(
    "is are was were does do did can could should shall will would has have had may might must".split()  # noqa: SIM905
)
_QUESTION_START = re.compile(
    r"^\s*(?:is|are|was|were|does|do|did|can|could|should|shall|will|would|has|have|had|may|might|must)\b",
    re.I,
)

_SPELLING = [
    (re.compile(r"aemia"), "emia"),
    (re.compile(r"^haem"), "hem"),
    (re.compile(r"^oesoph"), "esoph"),
    (re.compile(r"^oestr"), "estr"),
    (re.compile(r"^paed"), "ped"),
    (re.compile(r"^foet"), "fet"),
    (re.compile(r"^orthopaed"), "orthoped"),
    (re.compile(r"^anaesth"), "anesth"),
    (re.compile(r"our$"), "or"),  # tumour, behaviour (colour, favour); "four" is too short to reach here
    (re.compile(r"(?<=[a-z]{3})is(e|ed|es|ing|ation|ations)$"), r"iz\1"),  # randomised, hospitalisation
    (re.compile(r"(?<=[a-z]{2})yse(d|s)?$"), r"yze\1"),  # analysed
    (re.compile(r"tre$"), "ter"),  # centre, litre
]
_STEMMER = None


@lru_cache(maxsize=50_000)
def stem(word: str) -> str:
    """A word folded for matching: lower case, hyphens and apostrophes out, British spelling to American,
    Porter2 stem."""
    global _STEMMER
    if _STEMMER is None:
        import snowballstemmer

        _STEMMER = snowballstemmer.stemmer("english")
    word = word.lower().replace("’", "'").removesuffix("'s").replace("'", "").replace("-", "")
    if len(word) > 4 and not any(c.isdigit() for c in word):
        for pattern, replacement in _SPELLING:
            word = pattern.sub(replacement, word)
    return _STEMMER.stemWord(word) if word.isalpha() else word


def words(text: str) -> list[str]:
    """The tokens of ``text`` ("type 2" kept as one), in order."""
    return _TOKEN.findall(text)


def stems(text: str) -> set[str]:
    """Every folded word of ``text``, each hyphenated word also as its parts ("COVID-19" → covid19, covid,
    19)."""
    out: set[str] = set()
    for token in words(text):
        out.add(stem(token))
        if "-" in token:
            out.update(stem(part) for part in token.split("-") if part)
    return out


def _specificity(phrase: Sequence[str], first: bool) -> int:
    """2 for a name-like phrase (digits, capitals after a word's first letter, or a capitalised word that
    does not open the question: "SATB1", "IL-6", "Wolman"), 1 for a word of 9 letters or more, else 0."""
    for n, token in enumerate(phrase):
        if any(c.isdigit() for c in token) or any(c.isupper() for c in token[1:]):
            return 2
        if token[:1].isupper() and not (first and n == 0):
            return 2
    return 1 if any(len(t) >= 9 for t in phrase) else 0


def _names(phrase: Sequence[str], first: bool) -> tuple[str, ...]:
    """The folded name-like words of a phrase (digits or inner capitals; for a hyphenated one, its longest
    part too: "p-crAssphage" is written "crAssphage" as often)."""
    out: list[str] = []
    for n, token in enumerate(phrase):
        if not (any(c.isdigit() for c in token) or any(c.isupper() for c in token[1:])):
            continue
        if token.isdigit() or (first and n == 0 and not any(c.isupper() for c in token[1:])):
            continue
        out.append(stem(token))
        if "-" in token:
            longest = max(token.split("-"), key=len)
            if len(longest) >= 4:
                out.append(stem(longest))
    return tuple(dict.fromkeys(out))


def is_generic(word: str) -> bool:
    lower = word.lower()
    return (
        lower in GENERIC
        or (len(lower) < 2 and not lower.isdigit())
        or (lower.endswith("ly") and len(lower) > 4)
    )


# Words that name drugs by their international non-proprietary name stems (WHO): -mab, -nib, -vir, -statin...
_DRUG = re.compile(
    r"(?:mab|nib|vir|statin|sone|olone|olol|pril|sartan|azole|cillin|mycin|floxacin|cycline|tide|parin|dronate|"
    r"platin|taxel|rubicin|gliptin|gliflozin|glitazone|prazole|tidine|setron|triptan|dipine|caine|azepam|"
    r"oxetine|pramine|barbital|profen|coxib|lukast|terol|xaban|gatran|lutamide|relin|formin|vastatin|thiazide|"
    r"semide|mide|navir|buvir|ciclovir|amivir|conazole|fungin|kinra|cept|ase)$",
    re.I,
)


# ----- concepts ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Concept:
    """A main concept of the question: its words as asked, their folded forms, its role, and synonyms
    learnt from the retrieved articles."""

    text: str
    role: str  # intervention | population | outcome | topic
    keys: tuple[str, ...]  # folded words (a concept of several words is mentioned when most of them are)
    specificity: int = 0  # 2: a name (capitals inside the question, digits), 1: a long word, 0: plain
    synonyms: set[str] = field(default_factory=set)  # folded single words or phrases (space-joined stems)
    names: tuple[str, ...] = ()  # folded name-like words ("KCNT2", "PIEZO1", "crAssphage"): one is enough

    def needed(self) -> int:
        """How many of the concept's words a text must hold: all of one or two, most of a longer one."""
        n = len(self.keys)
        return n if n <= 2 else max(2, round(n * 0.6))

    @property
    def anchors(self) -> set[str]:
        """The words that carry a concept of several: its last (the head noun, mostly) and its longest."""
        if not self.keys:
            return set()
        return {self.keys[-1], max(self.keys, key=len)}

    def in_stems(self, found: set[str], loose: bool = False) -> bool:
        """Whether a text with these folded words mentions the concept (``loose``: its head word is enough,
        as a sentence that names "cholecystectomy" is about "laparoscopic cholecystectomy" while one that
        names only "laparoscopic" is not)."""
        if sum(k in found for k in self.keys) >= self.needed():
            return True
        if any(n in found for n in self.names):
            return True  # "the protein PIEZO1" is mentioned by a text that names PIEZO1
        if loose and self.anchors & found:
            return True
        return any(all(part in found for part in synonym.split()) for synonym in self.synonyms)

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "role": self.role}


@dataclass(slots=True)
class Focus:
    """What a question is about."""

    question: str
    yes_no: bool  # can be answered yes / no
    concepts: list[Concept]
    age_groups: frozenset[str]  # the population's age groups, when the question names one
    direction: int = 0  # +1: asks whether something increases/improves; -1: reduces/prevents; 0: neither
    safety: bool = False  # asks whether something is safe (no worse), not whether it works

    def strong_primary(self, known: Callable[[list[str]], set[str]] | None = None) -> bool:
        """Whether the primary concept names a thing articles are indexed or written by (a drug, a gene, a
        procedure): a name with capitals or digits, a drug-like word, or a MeSH descriptor of the library
        (``known`` looks names up). Against a weak one ("discrepancy", "pretreatment"), an article may be
        about the question without using the word."""
        primary = self.primary
        if primary is None:
            return False
        if primary.specificity == 2 or any(_DRUG.search(w) for w in primary.text.split()):
            return True
        if known is None:
            return False
        words = primary.text.split()
        forms = {primary.text, primary.text.capitalize(), primary.text.title()}
        if len(words) == 2:  # MeSH inverts: "Cholecystectomy, Laparoscopic"
            forms |= {
                f"{words[1].capitalize()}, {words[0].capitalize()}",
                f"{words[1].title()}, {words[0].title()}",
            }
        if primary.text.lower().endswith("s"):
            singular = primary.text[:-1]
            forms |= {singular.capitalize(), singular.title()}
        return bool(known(sorted(forms)))

    @property
    def primary(self) -> Concept | None:
        """The concept an answer must be about: the intervention, else the most specific topic (a name
        with capitals or digits, such as a gene or a drug code, before plain words; then the longest)."""
        for concept in self.concepts:
            if concept.role == "intervention":
                return concept
        topics = (
            [c for c in self.concepts if c.role == "topic"]
            or [c for c in self.concepts if c.role != "answer type"]
            or list(self.concepts)
        )
        if not topics:
            return None
        return max(topics, key=lambda c: (c.specificity, -self.concepts.index(c)))

    @property
    def main(self) -> list[Concept]:
        """The concepts an answer sentence must mention one of (the answer type is not among them)."""
        return [c for c in self.concepts if c.role != "answer type"] or list(self.concepts)

    def by_role(self, role: str) -> list[str]:
        return [c.text for c in self.concepts if c.role == role]

    def mentioned(self, text: str, extra: Iterable[str] = (), *, loose: bool = False) -> list[Concept]:
        """The main concepts ``text`` (plus ``extra`` texts: MeSH headings, keywords) mentions."""
        found = stems(text)
        for more in extra:
            found |= stems(more)
        return [c for c in self.main if c.in_stems(found, loose)]

    def mentions_any(self, text: str) -> bool:
        return bool(self.mentioned(text))

    def learn_synonyms(self, texts: Iterable[str], headings: Iterable[str] = ()) -> None:
        """Synonyms from retrieved articles: abbreviations they define for a concept, and MeSH headings or
        keywords that are a concept written another way ("Cholecystectomy, Laparoscopic")."""
        for text in texts:
            for long_form, short in abbreviations(text):
                long_stems = [stem(w) for w in words(long_form) if not is_generic(w)]
                for concept in self.concepts:
                    if not long_stems:
                        continue
                    short_key = stem(short)
                    if short_key in concept.keys or short.lower() == concept.text.lower():
                        concept.synonyms.add(" ".join(long_stems))  # the question used the abbreviation
                    elif sum(k in long_stems for k in concept.keys) >= concept.needed():
                        concept.synonyms.add(short_key)
        for heading in headings:
            parts = [p.strip() for p in heading.split(",") if p.strip()]
            flipped = " ".join(reversed(parts)) if len(parts) > 1 else heading
            keys = {stem(w) for w in words(flipped) if not is_generic(w)}
            for concept in self.concepts:
                if keys and set(concept.keys) <= keys and len(keys) <= len(concept.keys) + 1:
                    concept.synonyms.add(" ".join(sorted(keys)))

    def to_dict(self) -> dict[str, object]:
        return {
            "yes_no": self.yes_no,
            "intervention": self.by_role("intervention"),
            "population": self.by_role("population"),
            "outcome": self.by_role("outcome"),
            "topic": self.by_role("topic"),
            "primary": self.primary.text if self.primary else None,
            "age_groups": sorted(self.age_groups),
        }


_SAFETY = frozenset(
    ["safe", "safety", "safely", "feasible", "feasibility", "tolerable", "tolerated", "acceptable"]
)
_DIRECTION_UP = frozenset(
    """increase increases increased increasing raise raises higher elevate elevated improve improves improved
    enhance enhances promote promotes worsen worsens aggravate induce induces cause causes""".split()  # noqa: SIM905
)
_DIRECTION_DOWN = frozenset(
    """reduce reduces reduced reducing decrease decreases decreased lower lowers prevent prevents prevented
    shorten shortens inhibit inhibits suppress suppresses attenuate attenuates protect protects alleviate
    alleviates relieve relieves""".split()  # noqa: SIM905
)


def read_question(question: str) -> Focus:
    """The main concepts of ``question``, their roles, its population and whether it is a yes/no question."""
    text = question.strip()
    wh = bool(_WH_START.match(text))
    yes_no = not wh and (bool(_QUESTION_START.match(text)) or text.endswith("?"))
    tokens = words(text)
    wh_kind = tokens[0].lower() if wh and tokens else ""
    # phrases: runs of non-generic words (population words kept inside them), with where they start
    phrases: list[tuple[list[str], int]] = []
    current: list[str] = []
    start = 0
    for i, token in enumerate(tokens):
        letter_name = len(token) == 1 and token.isupper() and i > 0 and tokens[i - 1][:1].isupper()
        if is_generic(token) and token.lower() not in _POPULATION_WORDS and not letter_name:
            if current:
                phrases.append((current, start))
                current = []
            continue
        if not current:
            start = i
        current.append(token)
    if current:
        phrases.append((current, start))
    auxiliary = next(
        (i for i, t in enumerate(tokens) if t.lower() in _AUXILIARY and (i == 0 or _after_break(text, t, i))),
        -1,
    )

    concepts: list[Concept] = []
    starts: list[int] = []  # where each concept begins in the question
    previous_population = False
    for phrase, begin in phrases:
        population_words = [w for w in phrase if w.lower() in _POPULATION_WORDS]
        specific = [
            w
            for w in phrase
            if w.lower() not in _POPULATION_WORDS and (not is_generic(w) or (len(w) == 1 and w.isupper()))
        ]
        before = tokens[begin - 1].lower() if begin > 0 else ""
        preceded_by_with = before in ("with", "having", "suffering")
        # "Does metformin reduce cancer incidence in type 2 diabetes?": after a subject and an outcome,
        # "in X" / "among X" names who was studied
        setting = yes_no and before in ("in", "among") and len(concepts) >= 2
        if not specific:
            previous_population = bool(population_words)
            continue  # "elderly patients": an age group, read below; "patients" alone says nothing
        keys = tuple(dict.fromkeys(stem(w) for w in specific))
        population = bool(population_words) or (preceded_by_with and previous_population) or setting
        concepts.append(
            Concept(
                text=" ".join(specific),
                role="population" if population else "topic",
                keys=keys,
                specificity=_specificity(specific, begin == 0),
                names=_names(specific, begin == 0),
            )
        )
        starts.append(begin)
        previous_population = population
    if yes_no:
        candidates = [(c, b) for c, b in zip(concepts, starts, strict=True) if c.role != "population"]
        after = [c for c, b in candidates if b > auxiliary] or [c for c, _b in candidates]
        if after:
            after[0].role = "intervention"
            for concept in concepts:
                if concept.role == "topic":
                    concept.role = "outcome"
        elif concepts:
            concepts[0].role = "intervention"
    elif wh_kind in ("which", "what") and len(concepts) > 1 and starts[0] <= 4:
        concepts[0].role = "answer type"  # "Which enzyme ...": what is asked for, not what it is about
    lowered = {w.lower() for w in tokens}
    direction = 0
    if lowered & _DIRECTION_UP and not lowered & _DIRECTION_DOWN:
        direction = 1
    elif lowered & _DIRECTION_DOWN and not lowered & _DIRECTION_UP:
        direction = -1
    return Focus(
        question=question,
        yes_no=yes_no,
        concepts=concepts,
        age_groups=age_groups_in_question(text),
        direction=direction,
        safety=yes_no and bool(lowered & _SAFETY) and not direction,
    )


def _after_break(text: str, token: str, index: int) -> bool:
    """Whether the ``index``-th token (an auxiliary verb) opens a clause: after ":", ";" or ",", as in
    "Ovarian carcinoma in Thai women: should we offer second-look laparotomy?"."""
    seen = -1
    for match in _TOKEN.finditer(text):
        seen += 1
        if seen == index:
            before = text[: match.start()].rstrip()
            return before.endswith((":", ";", ",", "?"))
    return False


# ----- abbreviations ----------------------------------------------------------------------------------------

_PAREN = re.compile(r"\(([^()]{1,12})\)")


def abbreviations(text: str) -> list[tuple[str, str]]:
    """(long form, short form) pairs defined in ``text`` as "long form (SF)" (Schwartz & Hearst, 2003)."""
    pairs = []
    for match in _PAREN.finditer(text):
        short = match.group(1).strip()
        if not (2 <= len(short) <= 10) or not re.fullmatch(r"[A-Za-z][\w-]*", short) or short.islower():
            continue
        before = words(text[: match.start()])[-min(len(short) + 5, len(short) * 2) :]
        long_form = _best_long_form(short, before)
        if long_form:
            pairs.append((long_form, short))
    return pairs


def abbreviation_map(text: str) -> dict[str, str]:
    """Short form → long form of the abbreviations ``text`` defines (the first definition of each wins)."""
    mapping: dict[str, str] = {}
    for long_form, short in abbreviations(text):
        mapping.setdefault(short, long_form)
    return mapping


def expand_abbreviations(text: str, mapping: dict[str, str]) -> str:
    """``text`` with each abbreviation of ``mapping`` written out before itself ("no difference in VAP" →
    "no difference in ventilator-associated pneumonia (VAP)"); a definition "(VAP)" stays as written. For
    embedding: a general-domain embedder does not know an article's own abbreviations, so a finding written
    with them reads as far from a question that names the thing, while a question that uses the
    abbreviation still finds it. Case-sensitive; a plural "s" is kept."""
    if not mapping:
        return text
    names = "|".join(re.escape(short) for short in sorted(mapping, key=len, reverse=True))
    pattern = re.compile(rf"\((?:{names})s?\)|(?<![\w-])({names})(s?)(?!\w)")

    def written_out(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)  # the definition itself
        short, plural = match.group(1), match.group(2)
        return f"{mapping[short]}{plural} ({short}{plural})"

    return pattern.sub(written_out, text)


def _best_long_form(short: str, candidates: Sequence[str]) -> str | None:
    """The shortest tail of ``candidates`` whose letters spell ``short`` (its first letter opening a word)."""
    letters = [c.lower() for c in short if c.isalnum()]
    text = " ".join(candidates)
    s, t = len(letters) - 1, len(text) - 1
    while s >= 0:
        char = letters[s]
        while t >= 0 and (text[t].lower() != char or (s == 0 and t > 0 and text[t - 1].isalnum())):
            t -= 1
        if t < 0:
            return None
        s -= 1
        t -= 1
    start = text.rfind(" ", 0, t + 1) + 1
    long_form = text[start:].strip()
    if len(long_form.split()) > len(letters) + 5 or long_form.lower() == short.lower():
        return None
    return long_form


# ----- populations ------------------------------------------------------------------------------------------

AGE_GROUPS = ("newborns", "infants", "children", "adolescents", "adults", "older adults")
_AGE_WORDS = {
    "newborns": r"neonat\w*|newborns?|preterm|premature infants?",
    "infants": r"infants?|infancy|toddlers?",
    "children": r"child(?:ren|hood)?|paediatric|pediatric|kids?|school-?age|preschool\w*|boys|girls",
    "adolescents": r"adolescen\w*|teen(?:s|agers?)?|youths?|juvenile",
    "adults": r"adults?|middle-aged",
    "older adults": r"elderly|older (?:adults?|people|patients|persons|women|men|subjects|individuals)|"
    r"geriatric|aged (?:patients|people|persons)|seniors?|octogenarians?|nonagenarians?|centenarians?|"
    r"the aged|very old|oldest old",
}
_AGE_PATTERNS = {group: re.compile(rf"\b(?:{pattern})\b", re.I) for group, pattern in _AGE_WORDS.items()}
_MESH_AGE = {
    "infant, newborn": "newborns",
    "infant": "infants",
    "child, preschool": "children",
    "child": "children",
    "adolescent": "adolescents",
    "young adult": "adults",
    "adult": "adults",
    "middle aged": "adults",
    "aged": "older adults",
    "aged, 80 and over": "older adults",
    "frail elderly": "older adults",
}
_MEAN_AGE = re.compile(
    r"\b(?:mean|median|average)\s+(?:\(\s*(?:sd|iqr|range)\s*\)\s+)?age\s*(?:\([^)]{0,20}\)\s*)?"
    r"(?:was|of|at|is|:|=|,)?\s*(?:was\s+)?(\d{1,3}(?:\.\d+)?)\s*(?:±\s*\d+(?:\.\d+)?\s*)?(years?|yrs?|y\b|months?|mo\b|days?)?",
    re.I,
)
_AGED = re.compile(
    r"\b(?:aged|age[sd]?|ages)\s+(?:between\s+)?(?:≥|>=|>|over|above|older than)?\s*(\d{1,3})\s*"
    r"(?:(?:-|–|to|and)\s*(\d{1,3}))?\s*(years?|yrs?|y\b|months?|days?)",
    re.I,
)
_YEARS_OLD = re.compile(r"\b(\d{1,3})\s*(?:-|–|to)?\s*(\d{1,3})?\s*[- ]?years?[- ]old\b", re.I)


def group_of_age(years: float) -> str:
    if years < 0.08:
        return "newborns"
    if years < 2:
        return "infants"
    if years < 12:
        return "children"
    if years < 18:
        return "adolescents"
    if years < 65:
        return "adults"
    return "older adults"


def age_groups_in_question(text: str) -> frozenset[str]:
    return frozenset(g for g, pattern in _AGE_PATTERNS.items() if pattern.search(text)) | _ages(text)


def _ages(text: str) -> frozenset[str]:
    groups: set[str] = set()
    for match in _MEAN_AGE.finditer(text):
        value = float(match.group(1))
        unit = (match.group(2) or "years").lower()
        value = value / 12 if unit.startswith("mo") else value / 365 if unit.startswith("d") else value
        if 0 < value < 110:
            groups.add(group_of_age(value))
    for pattern in (_AGED, _YEARS_OLD):
        for match in pattern.finditer(text):
            low = float(match.group(1))
            high = float(match.group(2)) if match.group(2) else low
            unit = match.group(3).lower() if pattern is _AGED and match.group(3) else "years"
            if unit.startswith("mo"):
                low, high = low / 12, high / 12
            elif unit.startswith("d"):
                low, high = low / 365, high / 365
            if 0 < low <= high < 110:
                groups.add(group_of_age(low))
                groups.add(group_of_age(high))
    return frozenset(groups)


def age_groups_of_study(text: str, mesh: Iterable[str] = ()) -> frozenset[str]:
    """The age groups a study's abstract describes (ages stated, words) and its MeSH age tags."""
    groups = set(_ages(text))
    if not groups:
        groups = {g for g, pattern in _AGE_PATTERNS.items() if pattern.search(text)}
    for heading in mesh:
        group = _MESH_AGE.get(heading.strip().lower())
        if group:
            groups.add(group)
    return frozenset(groups)


def population_mismatch(question: frozenset[str], study: frozenset[str]) -> bool:
    """The question names an age group and the study describes only other ones (adjacent groups excepted:
    an "adults" study may include older adults, "adolescents" border children)."""
    if not question or not study or question & study:
        return False
    near = {
        "older adults": {"adults"},
        "adults": {"older adults", "adolescents"},
        "adolescents": {"children", "adults"},
        "children": {"adolescents", "infants"},
        "infants": {"children", "newborns"},
        "newborns": {"infants"},
    }
    return not any(study & near.get(group, set()) for group in question)
