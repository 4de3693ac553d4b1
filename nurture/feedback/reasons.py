"""Why a message came back, and whether that makes the bounce hard: the one table.

A bounce is hard only when the address itself is bad: no such user, no such domain, a mailbox
disabled or gone, a domain that takes no mail (null MX), an address the sending service
already knows bounces as invalid. Anything about this message, this sender or this moment is
soft: a full mailbox, a message too big, spam or content filters, our IP on a block list,
SPF/DKIM/DMARC of our domain, rates, greylisting, relaying, policy, time-outs.

Each reason class names the enhanced status codes (RFC 3463) that mean it and the words mail
systems use for it: Postfix, Exim, Sendmail, qmail, Courier, Exchange and Office 365, Gmail,
Yahoo, Outlook.com, Amazon SES, Notes, OpenSMTPD and others (as GNU Mailman's flufl.bounce
and the sisimai project catalogue them; the rules here are our own).

The words decide before the code. Servers answer 5.0.0, 5.5.0 or a bare 550 for anything, and
some put a specific code on the wrong thing: qmail-toaster says "user is over quota (#5.1.1)",
Postfix answers our own sender's unknown domain with 5.1.8. So the first class whose words
match the server's diagnostic wins, the classes about us and the message first (a "full" or
"blocked" in a reply says more than a 5.1.1), then those about the address, then the generic
ones. Only when no words match does the code decide, and only a specific code can make a bounce
hard: a generic one with unknown words stays soft, since one soft bounce costs little.
A temporary reply (4xx, or a 4.x.x code) is never hard, whatever it says: the server itself
says it may work later.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Reason(enum.StrEnum):
    MAILBOX_FULL = "mailbox full"
    TOO_BIG = "message too big"
    RATE_LIMITED = "rate limited"
    AUTHENTICATION = "our sender failed SPF, DKIM or DMARC"
    SENDER_REFUSED = "our sender address refused"
    BLOCKED = "blocked: our IP or domain on a list, reputation, reverse DNS"
    SPAM = "spam or content filter"
    RELAY_DENIED = "relay denied"
    DISABLED = "mailbox disabled"
    MOVED = "mailbox moved"
    NO_MAIL = "domain accepts no mail"
    SUPPRESSED = "known to bounce as invalid"
    USER_UNKNOWN = "user unknown"
    HOST_UNKNOWN = "domain unknown"
    EXPIRED = "expired: gave up retrying"
    NETWORK = "network or routing"
    POLICY = "policy"
    SYSTEM = "their system"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rule:
    reason: Reason
    hard: bool
    codes: frozenset[str]  # enhanced status codes that mean this reason
    words: re.Pattern[str]


def _rule(reason: Reason, hard: bool, codes: str, *words: str) -> Rule:
    pattern = re.compile("|".join(words), re.IGNORECASE) if words else re.compile(r"(?!)")
    return Rule(reason, hard, frozenset(codes.split()), pattern)


# In order: the first class whose words match wins (see above).
RULES: tuple[Rule, ...] = (
    _rule(
        Reason.MAILBOX_FULL,
        False,
        "4.2.2 5.2.2",
        r"mail ?box (is )?full|full mailbox|mail ?(box|folder|file)\W+(is |would be )?"
        r"(over|full|exceed)|(over|exceed\w*) (the |its |their |your )?(allowed |mailbox |disk |"
        r"storage )?quota|quota (exceeded|violation|usage)|quotaexceeded|inbox is (full|out of)"
        r"|insufficient (disk )?space|not enough (disk |storage )?space|disk space limit|storage "
        r"(allocation|space)|user is over|is over (disk )?quota|no space left",
    ),
    _rule(
        Reason.TOO_BIG,
        False,
        "5.2.3 5.3.4 4.3.4 5.7.16 4.7.16",
        r"message (is )?too (big|large)|too large for|size (limit|exceeds)|exceeds? (the )?"
        r"(fixed )?(maximum|max) (\w+ )?size|message length exceeds|sizelimit|recipsizelimit",
    ),
    _rule(
        Reason.RATE_LIMITED,
        False,
        "4.7.28 5.7.28",
        r"rate limit|at a rate that|try again slower|too many (connections|messages|"
        r"recipients|sessions|concurrent)|connection rate|sending rate|unusual rate|throttl",
    ),
    _rule(
        Reason.AUTHENTICATION,
        False,
        "5.7.20 5.7.21 5.7.22 5.7.23 5.7.24 5.7.26 4.7.24 4.7.26",
        r"dmarc|\bspf\b|sender policy framework|\bdkim\b|unauthenticated (e-?mail|sender)",
    ),
    _rule(
        Reason.SENDER_REFUSED,
        False,
        "5.1.7 5.1.8 4.1.7 4.1.8",
        r"sender (address |domain )?(was |is )?(rejected|refused|denied|not allowed|invalid|"
        r"blocked)|envelope sender|sender verify|bad sender|sender domain (must|does)"
        r"|domain of sender address|(after|in reply to) mail from",
    ),
    _rule(
        Reason.BLOCKED,
        False,
        "5.7.25 4.7.25",
        r"block ?list|black ?list|blocked using|(?<!not )\blisted (at|in|on)\b|spamhaus"
        r"|spamcop|dnsbl|\brbl\b|reputation|banned sending"
        r"|not accepting (mail|messages|connections) from"
        r"|client host .{0,40}(rejected|blocked)|cannot find your hostname|\bptr\b|reverse dns"
        r"|\brdns\b|user complaints|traffic not accepted|(ip|host|network) .{0,30}blocked",
    ),
    _rule(
        Reason.SPAM,
        False,
        "",
        r"spam|unsolicited|junk (e-?)?mail|content (filter|rejected|denied)|unacceptable content"
        r"|virus|malware|infected|phish|message (filtered|content rejected)|bulk (e-?)?mail",
    ),
    _rule(
        Reason.RELAY_DENIED,
        False,
        "",
        r"relay(ing)? (access )?(denied|not permitted|prohibited)|(not permitted|unable) to relay"
        r"|no relaying|as a relay|relay not",
    ),
    _rule(
        Reason.DISABLED,
        True,
        "5.2.1 5.7.13",
        r"(mail ?box|account|user|address) (is |has been |was )?(currently )?(disabled|"
        r"deactivated|suspended|inactive|terminated|locked|frozen|discontinued|blocked)"
        r"|(inactive|disabled) (account|user|mailbox|recipient)",
    ),
    _rule(Reason.MOVED, True, "5.1.6 4.1.6 5.7.17", r"has been replaced by|mailbox has moved"),
    _rule(
        Reason.NO_MAIL,
        True,
        "5.7.27",
        r"null ?mx|(domain|host) does not accept mail|accepts no mail|no mx (record )?found"
        r"|indicated no smtp service",
    ),
    _rule(Reason.SUPPRESSED, True, "", r"history of bouncing|suppressed .{0,60}invalid address"),
    _rule(
        Reason.USER_UNKNOWN,
        True,
        "5.1.1 5.1.3 5.1.10",
        r"user unknown|unknown (user|recipient|mailbox|address|local.?part|e-?mail)"
        r"|no such (user|mailbox|recipient|address|person|account)|addressee unknown"
        r"|(user|recipient|mailbox|address|account) (\S+ )?(not found|does ?n.?t exist|did not "
        r"exist|not known|unknown|not exist)|(mailbox|address) (is )?(unavailable|invalid)"
        r"|tried to reach does not exist|invalid (recipient|mailbox|address|user)"
        r"|not a valid (mailbox|recipient|user)|no mailbox (here|by that name)"
        r"|recip(ient)?notfound|couldn.?t be found|could not be found|wasn.?t found at"
        r"|not listed in (the )?(domino directory|public name)|is not a known user"
        r"|does ?n.?t have an? [\w.-]+ account|no longer (valid|exists|accepts mail)"
        r"|not our customer|recipient address rejected: (access denied|user|invalid|unknown)"
        r"|5\.1\.0 address rejected|unknown or invalid|invalid or unknown|no valid recipients"
        r"|invalid final delivery userid",
    ),
    _rule(
        Reason.HOST_UNKNOWN,
        True,
        "5.1.2 5.4.4 5.4.310",
        r"host or domain name not found|domain (name )?not found|no such domain|unknown domain"
        r"|domain .{0,40}does ?n.?t exist|nonexistent ?domain|unrout(e)?able address"
        r"|host unknown|unknown host|find any host named|nxdomain|no mail hosts for domain"
        r"|name server: .{0,60}host not found|dns lookup failure|domain is not reachable",
    ),
    _rule(
        Reason.EXPIRED,
        False,
        "4.4.7 5.4.7 4.4.1",
        r"expired|retry timeout exceeded|timed? ?out|too long in (the )?queue|in the queue too"
        r" long|giving up|could not be delivered for",
    ),
    _rule(
        Reason.NETWORK,
        False,
        "4.4.0 4.4.2 4.4.3 4.4.6 5.4.0 5.4.6 5.4.14",
        r"hop count|loop|network error|connection (refused|reset|dropped)|no route to host"
        r"|no valid route|unable to route|name server reply",
    ),
    _rule(
        Reason.POLICY,
        False,
        "5.7.0 5.7.1 4.7.0 4.7.1",
        r"polic(y|ies)|not authori[sz]ed|permission|prohibited|administrative|denied by"
        r"|authrequired|authentication required|allowed senders|not allowed|not accepted",
    ),
    _rule(
        Reason.SYSTEM,
        False,
        "4.3.0 4.3.1 4.3.2 5.3.0 5.3.1 5.3.2 4.2.0",
        r"system (failure|error|config)|local (error|problem)|temporary (failure|problem)"
        r"|try again later|service (currently )?unavailable|greylist|graylist",
    ),
)
BY_CODE = {code: rule for rule in RULES for code in rule.codes}
UNKNOWN = Rule(Reason.UNKNOWN, False, frozenset(), re.compile(r"(?!)"))
# An enhanced status code (RFC 3463), not part of an IP address or version number.
ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# An SMTP reply code where a reply starts ("550 ...", "550-...", "#550 ...", "<<< 550").
REPLY = re.compile(r"(?:^|[\s#:;(<>])([245])\d\d(?=[\s-])")


def enhanced(text: str) -> str:
    found = ENHANCED.search(text)
    return ".".join(found.groups()) if found else ""


def by_words(*texts: str) -> Rule | None:
    """The first class whose words match, in the first text that any class matches: a
    server's diagnostic before the notice's own explanation."""
    for text in texts:
        flat = " ".join(text.split())  # folded header lines, wrapped notice text
        for rule in RULES:
            if rule.words.search(flat):
                return rule
    return None


def temporary(code: str, text: str) -> bool:
    """The server said to try later: a 4.x.x code, or a 4xx reply under no code or a generic
    one (Exim reports "Status: 5.0.0" for a greylisting server it gave up on)."""
    reply = REPLY.search(text)
    if reply is not None and (not code or code.endswith(".0.0")):
        return reply.group(1) == "4"
    return code.startswith("4")


def server_words(notice: str) -> str:
    """The paragraphs of a notice that carry an SMTP reply or status code: what the servers
    said, apart from the notice's advice around it ("check your junk folder...")."""
    paragraphs = re.split(r"\n\s*\n", notice)
    return "\n".join(p for p in paragraphs if REPLY.search(p) or ENHANCED.search(p))


def judge(code: str, *texts: str) -> tuple[Rule, bool]:
    """(the reason, hard?) for a failure with this enhanced status code (maybe empty) and these
    texts: the server's own diagnostic first, then what the notice says around it."""
    rule = by_words(*texts) or BY_CODE.get(code) or UNKNOWN
    return rule, rule.hard and not temporary(code, texts[0] if texts else "")
