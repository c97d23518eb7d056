"""scikit-learn's estimator checks on ferromine's estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from ferromine.drift import PSIDrift


def expected_failures(estimator):
    return {}


@parametrize_with_checks([PSIDrift()], expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)
