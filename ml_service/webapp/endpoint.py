"""The scoring endpoint, as the web app's server side calls it.

Every failure becomes an EndpointError whose message a person can act on: the endpoint's
own message for a request it refused (4xx), and plain words for an endpoint that is down,
slow or broken. The key travels in the Authorization header of the server's request only; it
never reaches a page.
"""
from typing import Any, Dict, List, Optional, Sequence

import requests

DATA_KEY, LABELS_KEY, RESULT_KEY = "data", "labels", "result"


class EndpointError(Exception):
    """The endpoint did not answer with predictions; the message says why in plain words, and
    ``status`` is what the app answers: 422 (the endpoint refused the request), 504 (it did
    not answer in time) or 502 (down or broken)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class Endpoint:
    """POSTs rows to the scoring URI, at most ``max_rows`` per request."""

    def __init__(self, uri: str, key: Optional[str] = None, timeout_s: float = 30.0,
                 max_rows: int = 1000, session: Optional[requests.Session] = None) -> None:
        self.uri = uri
        self.key = key
        self.timeout_s = timeout_s
        self.max_rows = max(1, int(max_rows))
        self.session = session or requests.Session()

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers

    def score(self, rows: Sequence[Sequence[float]], labels: bool = False) -> Dict[str, List]:
        """The endpoint's answer for ``rows``, sent in requests of at most max_rows rows and
        joined back in order."""
        answer: Dict[str, List] = {}
        for start in range(0, len(rows), self.max_rows):
            part = self._post({DATA_KEY: [list(row) for row in rows[start:start + self.max_rows]],
                               **({LABELS_KEY: True} if labels else {})})
            for key, values in part.items():
                answer.setdefault(key, []).extend(values)
        return answer

    def _post(self, body: Dict[str, Any]) -> Dict[str, List]:
        try:
            response = self.session.post(self.uri, json=body, headers=self._headers(),
                                         timeout=self.timeout_s)
        except requests.Timeout:
            raise EndpointError(f"The scoring service did not answer within "
                                f"{self.timeout_s:g} seconds. Try again, or with fewer rows.",
                                504) from None
        except requests.RequestException:
            raise EndpointError("The scoring service cannot be reached right now. Check that "
                                "it is deployed and running, then try again.") from None
        if response.status_code in (401, 403):
            raise EndpointError("The scoring service refused this app's key. The app's "
                                "settings need the endpoint's current key.")
        if 400 <= response.status_code < 500:
            raise EndpointError(f"The scoring service refused the request: "
                                f"{_message(response)}", 422)
        if response.status_code != 200:
            raise EndpointError(f"The scoring service failed (HTTP {response.status_code}). "
                                "Try again later; if it keeps failing, tell its owners.")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get(RESULT_KEY), list):
            raise EndpointError("The scoring service answered something that is not a "
                                "prediction. Tell its owners.")
        return answer


def _message(response: requests.Response) -> str:
    """The refusal's own message, or its first characters."""
    try:
        found = response.json()
    except ValueError:
        found = None
    if isinstance(found, dict) and isinstance(found.get("message"), str):
        return found["message"]
    return response.text[:300] or f"HTTP {response.status_code}"
